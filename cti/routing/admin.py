"""The routing admin page (``/admin/routing``): rules in order, edit, reorder, calendars,
history and the dry run, all through the REST API with the admin's own token."""

from __future__ import annotations

from aiohttp import web

PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Tamas · call routing</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,"Vazirmatn",sans-serif;margin:1.5rem;max-width:72rem;color:#222}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.35rem;
text-align:left;vertical-align:top;font-size:.9rem}th{background:#f4f4f4}
textarea{width:100%;font-family:monospace;font-size:.85rem}input,select{font-size:.9rem}
button{font-size:.85rem;margin:0 .1rem}.off{color:#999}.err{color:#b00020;white-space:pre-wrap}
.ok{color:#1b5e20}.box{border:1px solid #ccc;padding:1rem;margin:1rem 0;border-radius:4px}
code{background:#f4f4f4;padding:0 .2rem}.hidden{display:none}
</style></head><body>
<h1>Call routing <small id="who"></small></h1>
<div id="login" class="box"><b>Log in</b> (admins edit, supervisors read)<br>
<input id="user" placeholder="username"> <input id="pass" type="password" placeholder="password">
<button onclick="login()">Log in</button> <span id="loginerr" class="err"></span></div>
<div id="main" class="hidden">
<h2>Rules <small>(tried top to bottom; the first that matches and can act decides)</small></h2>
<table><thead><tr><th>#</th><th>name</th><th>when</th><th>then</th><th>v</th><th></th>
</tr></thead><tbody id="rules"></tbody></table>
<button onclick="edit(null)">New rule</button>
<div id="editor" class="box hidden"><b id="edtitle"></b><br>
name <input id="ename" size="40"> position <input id="epos" size="3">
match <select id="ematch"><option>all</option><option>any</option></select>
<label><input type="checkbox" id="eenabled" checked> enabled</label><br>
description <input id="edesc" size="80"><br>
conditions (JSON list; kinds: unknown_caller, record_type, owner, tag, lead_status, lead_list,
lead_rating, open_deals, open_cases, custom_field, field, language, vip, did, caller_number,
time, business_hours, holiday, agent_available)
<textarea id="econd" rows="7">[]</textarea>
action (JSON; types: owner, queue, team_queue, voicemail, external, reject)
<textarea id="eact" rows="3">{"type": "queue", "queue": "sales", "priority": 0}</textarea>
<button onclick="save()">Save</button> <button onclick="hide('editor')">Cancel</button>
<div id="ederr" class="err"></div></div>
<div id="history" class="box hidden"></div>
<h2>Dry run</h2>
number <input id="tnum" placeholder="09121234567"> DID <input id="tdid" placeholder="02188776655">
at <input id="tat" placeholder="2026-11-21T10:00 (local)"> assume available (user ids)
<input id="tavail" size="8"> <button onclick="dry()">Test</button>
<div id="dry"></div>
<h2>Calendars</h2>
<table><thead><tr><th>id</th><th>name</th><th>hours</th><th>holidays</th><th></th></tr></thead>
<tbody id="cals"></tbody></table>
<div class="box">calendar (JSON: name, hours {"sat": ["08:00-17:00"], ...}, holidays
[{"date": "1405-01-01", "name": "Nowruz"}]; Jalali dates are converted)
<textarea id="ccal" rows="4">{"name": "Office"}</textarea>
<button onclick="saveCal()">Create calendar</button><div id="calerr" class="err"></div></div>
</div>
<script>
const API = "/api/v1/routing";
let token = sessionStorage.getItem("tamas_token") || "", editing = null, rules = [];
const $ = id => document.getElementById(id);
const esc = s => String(s ?? "").replace(/[&<>"]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",
  '"':"&quot;"}[c]));
const hide = id => $(id).classList.add("hidden"), show = id => $(id).classList.remove("hidden");
async function call(method, path, body) {
  const r = await fetch(path, {method, headers: {"Authorization": "Bearer " + token,
    "Content-Type": "application/json"},
    body: body === undefined ? undefined : JSON.stringify(body)});
  const data = r.status === 204 ? null : await r.json();
  if (!r.ok) { const e = new Error(data && data.error || r.statusText); e.data = data; throw e; }
  return data;
}
function errText(e) {
  return e.data && e.data.errors ? e.data.errors.map(x => x.field + ": " + x.reason).join("\n")
    : e.message;
}
async function login() {
  try {
    const creds = {username: $("user").value, password: $("pass").value};
    const r = await fetch("/api/v1/auth/login", {method: "POST", headers: {"Content-Type":
      "application/json"}, body: JSON.stringify(creds)});
    const d = await r.json(); if (!r.ok) throw new Error(d.error);
    token = d.token; sessionStorage.setItem("tamas_token", token); start();
  } catch (e) { $("loginerr").textContent = e.message; }
}
function when(rule) {
  if (!rule.conditions.length) return "always";
  return rule.conditions.map(c => (c.negate ? "not " : "") + c.kind + " " + esc(JSON.stringify(
    Object.fromEntries(Object.entries(c).filter(([k]) => k !== "kind" && k !== "negate"))))
  ).join(rule.match === "any" ? "<br>or " : "<br>and ");
}
async function load() {
  rules = (await call("GET", API + "/rules")).items;
  $("rules").innerHTML = rules.map((x, i) => `<tr class="${x.enabled ? "" : "off"}">
    <td>${x.position}</td><td>${esc(x.name)}<br><small>${esc(x.description)}</small></td>
    <td>${when(x)}</td><td>${esc(JSON.stringify(x.action))}</td><td>${x.version}</td><td>
    <button onclick="move(${i},-1)">↑</button><button onclick="move(${i},1)">↓</button>
    <button onclick="edit(${x.id})">edit</button><button onclick="hist(${x.id})">history</button>
    <button onclick="del(${x.id})">delete</button></td></tr>`).join("");
  const cals = (await call("GET", API + "/calendars")).items;
  $("cals").innerHTML = cals.map(c => `<tr><td>${c.id}</td><td>${esc(c.name)}</td>
    <td>${esc(JSON.stringify(c.hours))}</td><td>${c.holidays.map(h => esc(h.date + " " + h.name))
    .join("<br>")}</td><td><button onclick="delCal(${c.id})">delete</button></td></tr>`).join("");
}
function edit(id) {
  editing = id; const x = rules.find(r => r.id === id);
  $("edtitle").textContent = x ? "Rule " + id + " (version " + x.version + ")" : "New rule";
  $("ename").value = x ? x.name : ""; $("edesc").value = x ? x.description || "" : "";
  $("epos").value = x ? x.position : ""; $("ematch").value = x ? x.match : "all";
  $("eenabled").checked = x ? x.enabled : true;
  $("econd").value = JSON.stringify(x ? x.conditions : [], null, 1);
  $("eact").value = JSON.stringify(x ? x.action : {type: "queue", queue: "sales", priority: 0});
  $("ederr").textContent = ""; show("editor");
}
async function save() {
  try {
    const body = {name: $("ename").value, description: $("edesc").value || null,
      match: $("ematch").value, enabled: $("eenabled").checked,
      conditions: JSON.parse($("econd").value), action: JSON.parse($("eact").value)};
    if ($("epos").value) body.position = parseInt($("epos").value, 10);
    await call(editing ? "PATCH" : "POST", API + "/rules" + (editing ? "/" + editing : ""), body);
    hide("editor"); load();
  } catch (e) { $("ederr").textContent = errText(e); }
}
async function move(i, d) {
  const ids = rules.map(r => r.id), j = i + d; if (j < 0 || j >= ids.length) return;
  [ids[i], ids[j]] = [ids[j], ids[i]]; await call("POST", API + "/rules/order", {ids}); load();
}
async function del(id) { if (confirm("Delete rule " + id + "?")) { await call("DELETE",
  API + "/rules/" + id); load(); } }
async function hist(id) {
  const h = (await call("GET", API + "/rules/" + id + "/history")).items;
  $("history").innerHTML = "<b>History of rule " + id + "</b> " +
    "<button onclick=\"hide('history')\">close</button><table>" +
    h.map(e => `<tr><td>${esc(e.at)}</td><td>user ${e.user_id}</td>
    <td>${e.action}</td><td>${Object.entries(e.changes).map(([k, v]) => "<b>" + esc(k) +
    "</b>: <code>" + esc(JSON.stringify(v[0])) + "</code> → <code>" + esc(JSON.stringify(v[1])) +
    "</code>").join("<br>")}</td></tr>`).join("") + "</table>";
  show("history");
}
async function dry() {
  try {
    const avail = $("tavail").value.split(",").map(s => parseInt(s, 10)).filter(n => !isNaN(n));
    const body = {number: $("tnum").value, did: $("tdid").value, assume_available: avail};
    if ($("tat").value) body.at = $("tat").value;
    const d = await call("POST", API + "/test", body), dec = d.decision;
    const rec = d.caller.record;
    $("dry").innerHTML = `<p>${esc(d.at)} · caller ${esc(d.caller.e164 || "unknown")} ·
      ${rec ? esc(rec.entity_type + " " + rec.entity_id + " " + rec.name) : "no CRM record"}</p>
      <p class="ok"><b>route ${esc(dec.route)}</b> by rule ${esc(dec.rule_id ?? dec.rule)}
      ${esc(JSON.stringify(d.variables))}</p><table>` + dec.reasons.map(x => `<tr><td>
      ${esc(x.rule_id ?? "")}</td><td>${esc(x.rule)}</td><td>${x.matched ? "✔" : ""}</td>
      <td>${esc(x.why)}</td></tr>`).join("") + "</table>";
  } catch (e) { $("dry").innerHTML = '<p class="err">' + esc(errText(e)) + "</p>"; }
}
async function saveCal() {
  try { await call("POST", API + "/calendars", JSON.parse($("ccal").value)); $("calerr")
    .textContent = ""; load(); } catch (e) { $("calerr").textContent = errText(e); }
}
async function delCal(id) {
  try { await call("DELETE", API + "/calendars/" + id); load(); }
  catch (e) { alert(errText(e)); }
}
async function start() {
  try { const me = await call("GET", "/api/v1/me"); $("who").textContent = "· " + me.username;
    hide("login"); show("main"); load(); }
  catch (e) { show("login"); }
}
if (token) start();
</script></body></html>
"""


async def admin_page(request: web.Request) -> web.Response:
    """The routing admin page (it logs in and talks to the REST API itself)."""
    return web.Response(
        text=PAGE,
        content_type="text/html",
        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"},
    )


def admin_routes() -> list[web.RouteDef]:
    return [web.get("/admin/routing", admin_page)]
