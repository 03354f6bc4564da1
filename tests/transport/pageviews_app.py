"""A plain Faust app with nothing Redis-specific in it (only the broker URL comes from the environment).

It follows the shape of faust-streaming's page-view tutorial: a Record model, `group_by` (an internal
repartition topic), and a tumbling-window table. Written here, not copied; the same module runs on Kafka
with `PV_BROKER=kafka://...`.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import faust


class PageView(faust.Record):
    id: str
    user: str


app = faust.App(
    "pageviews",
    broker=os.environ.get("PV_BROKER", "kafka://localhost:9092"),
    store="memory://",
    web_enabled=False,
    topic_partitions=4,
    broker_session_timeout=4.0,
    broker_heartbeat_interval=0.5,
    broker_commit_interval=0.5,
)
page_view_topic = app.topic("page_views", value_type=PageView)
page_views = app.Table("page_views", default=int).tumbling(3600.0, expires=7200.0)


@app.agent(page_view_topic)
async def count_page_views(views: Any) -> None:
    async for view in views.group_by(PageView.id):
        page_views[view.id] += 1


if __name__ == "__main__":
    sys.exit(faust.Worker(app, loglevel="INFO").execute_from_commandline())
