"""Campaigns: bulk calls from a file, the one owner of campaign state (docs/architecture.md).

``model`` (what a campaign is), ``store`` (its Redis keys), ``control`` (pause, resume,
cancel), ``rows`` (reading and validating the file), ``batches`` (rows sorted into calls and
rejections), ``enqueue`` (the file into the backlog), ``pacer`` (the backlog into the broker)
and ``report`` (what became of each row).
"""
