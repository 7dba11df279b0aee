"""A hung test fails at its time limit and says what it was waiting for (tests/hangs.py)."""

from __future__ import annotations

import pytest

from tests.servers import REPO_ROOT

pytest_plugins = ["pytester"]


def test_a_hung_async_test_fails_naming_the_await_it_is_stuck_in(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    pytester.makepyfile(
        test_stuck="""
        import asyncio
        import pytest

        async def wait_for_the_pbx(never):
            await never.wait()

        @pytest.mark.timeout(1)
        async def test_stuck():
            await asyncio.create_task(wait_for_the_pbx(asyncio.Event()), name="pbx-wait")

        def test_after_it():
            pass
        """
    )
    result = pytester.runpytest_subprocess(
        "-p", "tests.hangs", "-p", "no:cacheprovider", "-o", "timeout_method=signal",
        "-o", "asyncio_mode=auto",
    )  # fmt: skip
    result.assert_outcomes(failed=1, passed=1)  # the run went on after the hung test
    result.stdout.fnmatch_lines(
        [
            "*Timeout: still running after 1 s.*",
            "task 'pbx-wait'*",
            "*test_stuck.py:5 in wait_for_the_pbx",
        ]
    )
