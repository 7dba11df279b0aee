// What the hub has told us, as plain data: pops, live calls, agents, queues, PBX links.
// Pure functions (no DOM, no clock): a frame in, the new state plus "effects" out, so the
// desktop and the wallboard only render, and the logic is tested on its own.

export function emptyState() {
  return {
    pops: new Map(), // "pbx/call_id" -> pop (ringing or in progress at this agent)
    calls: new Map(), // "pbx/call_id" -> live call (supervisors)
    agents: new Map(), // user id -> agent state
    queues: new Map(), // queue name -> stats
    links: new Map(), // pbx -> "up" | "down" | ...
  };
}

export function callKey(pbx, callId) {
  return `${pbx}/${callId}`;
}

/** Agent state frames name the agent as {id, name}; keep one shape. */
export function normalizeAgent(a) {
  const agent = a.agent && typeof a.agent === 'object' ? a.agent : { id: a.id, name: a.name };
  return {
    id: agent.id,
    name: agent.name || `#${agent.id}`,
    state: a.state || 'unknown',
    since: a.since ?? null,
    reason: a.reason ?? a.pause_reason ?? null,
    queues: a.queues || [],
  };
}

/** The snapshot replaces everything (it is the truth after a (re)connect). */
export function applySnapshot(state, snap) {
  const next = emptyState();
  for (const pop of snap.pops || []) next.pops.set(callKey(pop.pbx, pop.call_id), { ...pop });
  for (const call of snap.calls || []) next.calls.set(callKey(call.pbx, call.call_id), { ...call });
  for (const a of snap.agents || []) {
    const agent = normalizeAgent(a);
    next.agents.set(agent.id, agent);
  }
  for (const q of snap.queues || []) next.queues.set(q.queue ?? q.name, { ...q, queue: q.queue ?? q.name });
  for (const l of snap.links || []) next.links.set(l.pbx, l.state);
  const effects = [];
  for (const [key, pop] of next.pops) {
    if (!state.pops.has(key)) effects.push({ kind: pop.state === 'ringing' ? 'ring' : 'pop', key, pop });
  }
  for (const [key, pop] of state.pops) {
    if (!next.pops.has(key)) effects.push({ kind: 'close', key, pop, reason: 'gone' });
  }
  effects.push({ kind: 'refresh' });
  return { state: next, effects };
}

/** Apply one event frame; returns the effects the UI should act on. Mutates `state`. */
export function applyEvent(state, ev) {
  const effects = [];
  switch (ev.type) {
    case 'pop': {
      const key = callKey(ev.pbx, ev.call_id);
      const fresh = !state.pops.has(key);
      const pop = { ...(state.pops.get(key) || {}), ...ev };
      state.pops.set(key, pop);
      effects.push({ kind: fresh && pop.state === 'ringing' ? 'ring' : 'pop', key, pop });
      break;
    }
    case 'pop.update': {
      const key = callKey(ev.pbx, ev.call_id);
      const pop = { ...(state.pops.get(key) || { pbx: ev.pbx, call_id: ev.call_id }), ...ev };
      delete pop.type;
      state.pops.set(key, pop);
      effects.push({ kind: 'update', key, pop });
      break;
    }
    case 'pop.close': {
      const key = callKey(ev.pbx, ev.call_id);
      const pop = { ...(state.pops.get(key) || { pbx: ev.pbx, call_id: ev.call_id }), ...ev };
      state.pops.delete(key);
      effects.push({ kind: 'close', key, pop, reason: ev.reason });
      break;
    }
    case 'call.ended':
      effects.push({ kind: 'ended', key: callKey(ev.pbx, ev.call_id), call: ev });
      break;
    case 'agent.state': {
      const agent = normalizeAgent(ev);
      state.agents.set(agent.id, agent);
      effects.push({ kind: 'agent', agent });
      break;
    }
    case 'queue.stats': {
      const before = state.queues.get(ev.queue);
      const q = { ...ev };
      delete q.type;
      state.queues.set(ev.queue, q);
      effects.push({ kind: 'queue', queue: q });
      if (before && (q.abandoned ?? 0) > (before.abandoned ?? 0)) {
        effects.push({ kind: 'abandoned', queue: q });
      }
      break;
    }
    case 'call.live': {
      const key = callKey(ev.pbx, ev.call_id);
      const call = { ...(state.calls.get(key) || {}), ...ev };
      delete call.type;
      state.calls.set(key, call);
      effects.push({ kind: 'call', key, call });
      break;
    }
    case 'call.gone': {
      const key = callKey(ev.pbx, ev.call_id);
      state.calls.delete(key);
      effects.push({ kind: 'call_gone', key });
      break;
    }
    case 'link':
      state.links.set(ev.pbx, ev.state);
      effects.push({ kind: 'link', pbx: ev.pbx, state: ev.state });
      break;
    default:
      effects.push({ kind: 'other', event: ev });
  }
  return effects;
}

/** Longest wait now: from the waiting callers when known, else the figure plus its age. */
export function longestWait(stats, receivedAt, now) {
  const callers = stats.callers || [];
  const since = callers.map((c) => c.wait_since).filter((x) => typeof x === 'number');
  if (since.length) return Math.max(0, now - Math.min(...since));
  if (!stats.waiting) return 0;
  return (stats.longest_wait || 0) + Math.max(0, now - receivedAt);
}

/** The state agents and supervisors mean: an idle agent in no queue is "logged out of
 * queues", even though the PBX calls a phone that is online but in no queue available. */
export function effectiveState(agent) {
  const queues = agent.queues || [];
  if (agent.state === 'available' && !queues.length) return 'logged_out';
  return agent.state || 'unknown';
}
