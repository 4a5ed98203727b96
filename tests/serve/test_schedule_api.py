"""Scheduled prompts over the API: add, list, run now, disable, remove; bad expressions explained."""

from __future__ import annotations

from tests.serve.conftest import served


async def test_a_job_is_scheduled_run_and_removed_over_http() -> None:
    async with served(["Three unread notes: …"]) as server, server.client() as client:
        added = await client.post(
            "/api/schedule", json={"prompt": "Summarise my unread notes", "cron": "0 8 * * 1-5", "name": "morning",
                                 "group_claim": "morning notes"}
        )  # fmt: skip
        assert added.status_code == 201, added.text
        job = added.json()
        assert job["kind"] == "cron" and job["enabled"] and job["next_run"] and job["group_claim"] == "morning notes"
        assert "8:00" in job["schedule"] or "08:00" in job["schedule"]
        assert [j["id"] for j in (await client.get("/api/schedule")).json()] == [job["id"]]
        run = await client.post(f"/api/schedule/{job['short_id']}/run")
        assert run.status_code == 200, run.text
        assert run.json()["status"] == "ok" and run.json()["trigger"] == "manual"
        assert run.json()["summary"] == "Three unread notes: …"
        detail = (await client.get(f"/api/schedule/{job['id']}")).json()
        assert [r["id"] for r in detail["runs"]] == [run.json()["id"]]
        steps = (await client.get("/api/timeline", params={"session_id": job["session_id"]})).json()
        assert "turn.end" in [e["kind"] for e in steps]
        off = await client.put(f"/api/schedule/{job['id']}", json={"enabled": False})
        assert off.json()["enabled"] is False and off.json()["next_run"] is None
        assert (await client.delete(f"/api/schedule/{job['id']}")).status_code == 204
        assert (await client.get(f"/api/schedule/{job['id']}")).status_code == 404


async def test_bad_schedules_get_a_reason() -> None:
    async with served() as server, server.client() as client:
        both = await client.post("/api/schedule", json={"prompt": "x", "cron": "0 8 * * *", "every": "1h"})
        assert both.status_code == 400 and "exactly one" in both.json()["message"]
        wrong = await client.post("/api/schedule", json={"prompt": "x", "cron": "61 8 * * *"})
        assert wrong.status_code == 400 and "minute" in wrong.json()["message"].lower()
        assert wrong.json()["fix"]
        none = await client.post("/api/schedule", json={"prompt": "x"})
        assert none.status_code == 400
        assert (await client.post("/api/schedule/nosuchjob/run")).status_code == 404
