"""The DAG's wait for complete input, and its signal that production moved.

* :class:`SealedLogsSensor` (task ``wait_for_logs``): with ``logs.source: external`` (your own
  logs, or what ``reloop serve`` wrote), a period's run waits until
  ``pipeline.schedule_offset_minutes`` after the period's end (its data interval's end) and until
  every day of the period is sealed (:func:`reloop.data.logs.seal.missing_seals`). It runs in
  **reschedule** mode: between two checks (``pipeline.wait_poke_s``) it is not running and
  holds no worker slot. After ``pipeline.wait_timeout_s`` it fails with Airflow's timeout
  message plus what is still missing; nothing downstream runs, so production is untouched. The
  built-in world and replays write (and seal) their own input in ``ingest``: it passes at once.
* :data:`PRODUCTION`: the Airflow Asset ``reloop://production``. The ``publish`` task emits an
  event on it when the period's promotion moved production, with the version and period as the
  event's extra, so other DAGs (a serving reload, a report) can be scheduled on it.

Imported by the DAG file only (it imports the Airflow task SDK).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import Asset, BaseSensorOperator
from airflow.sdk.exceptions import AirflowSensorTimeout, AirflowSkipException

__all__ = ["PRODUCTION", "SealedLogsSensor", "publish_production"]

#: Updated each time a period's promotion moves the production pointer.
PRODUCTION = Asset(uri="reloop://production", name="reloop_production")


class SealedLogsSensor(BaseSensorOperator):
    """Wait until the run's period is sealed (module docstring)."""

    def __init__(self, *, params_file: str, **kwargs: Any) -> None:
        kwargs.setdefault("mode", "reschedule")
        super().__init__(**kwargs)
        self.params_file = params_file
        self.missing: list[str] = []

    def poke(self, context: Any) -> bool:
        from reloop.config import load_params
        from reloop.data.logs.seal import missing_seals

        params = load_params(self.params_file)
        if params.logs.source != "external":
            return True  # ingest writes and seals the period itself
        period = context["data_interval_start"].date()
        ready_at = context["data_interval_end"] + dt.timedelta(
            minutes=params.pipeline.schedule_offset_minutes)
        if dt.datetime.now(dt.UTC) < ready_at:
            self.missing = [f"the schedule offset: input may still arrive until {ready_at}"]
            self.log.info("period %s: waiting until %s (pipeline.schedule_offset_minutes)",
                          period, ready_at)
            return False
        self.missing = missing_seals(params, period)
        if self.missing:
            self.log.info("period %s is waiting for: %s", period, "; ".join(self.missing))
        return not self.missing

    def execute(self, context: Any) -> Any:
        try:
            return super().execute(context)
        except AirflowSensorTimeout as err:
            period = context["data_interval_start"].date()
            raise AirflowSensorTimeout(
                f"{err} Period {period} is still not sealed: {'; '.join(self.missing)}. Nothing "
                "ran for the period and production is unchanged; seal the missing day "
                "(`reloop logs seal --date D`) and clear the task to run it."
            ) from None


def publish_production(decision: dict[str, Any], context: Any) -> dict[str, Any]:
    """The ``publish`` task: an event on :data:`PRODUCTION` when ``decision`` (the promote
    stage's result) moved production; skipped (no event) otherwise."""
    if not decision.get("moved"):
        why = decision.get("held") or "the candidate was not promoted"
        raise AirflowSkipException(f"production did not move ({why}): no asset event")
    period = context["data_interval_start"].date().isoformat()
    extra = {"model_id": decision.get("model_id"), "period": period}
    context["outlet_events"][PRODUCTION].extra = extra
    return extra
