"""Campaigns uploaded to the API, enqueued in background threads as ``campaign start`` does."""

from __future__ import annotations

import logging
import threading

from cmvoice.campaigns.enqueue import CampaignEnqueuer
from cmvoice.campaigns.model import Campaign
from cmvoice.campaigns.store import CampaignStore
from cmvoice.errors import CmVoiceError

logger = logging.getLogger(__name__)

#: How long shutdown waits for each start to commit its batch in hand and stop.
DEFAULT_STOP_TIMEOUT_S = 10.0


class CampaignStarts:
    """The enqueueing threads of one API process.

    A start stops after its batch in hand when the API shuts down, leaving a checkpoint:
    ``cmvoice campaign start <upload> --resume <id>`` continues it, as after a Ctrl-C.
    """

    def __init__(self) -> None:
        self._stopping = threading.Event()
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()

    def start(self, store: CampaignStore, campaign: Campaign) -> None:
        thread = threading.Thread(
            target=self._enqueue,
            args=(store, campaign),
            name=f"campaign-start:{campaign.campaign_id}",
            daemon=True,
        )
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def _enqueue(self, store: CampaignStore, campaign: Campaign) -> None:
        cid = campaign.campaign_id
        try:
            report = CampaignEnqueuer(store, campaign).run(should_stop=self._stopping.is_set)
            logger.info(
                "campaign %s: %d calls enqueued from %d rows (%d invalid, %d duplicates) in "
                "%.1f s%s",
                cid,
                report.enqueued,
                report.rows_read,
                report.invalid,
                report.duplicates,
                report.elapsed_s,
                f"; stopped: {report.stopped_because}" if report.stopped_because else "",
            )
        except CmVoiceError as exc:
            logger.warning("campaign %s: enqueueing stopped: %s", cid, exc)
        except Exception as exc:
            # Its message may quote a row: the type only. The campaign shows as interrupted.
            logger.error("campaign %s: enqueueing failed with %s", cid, type(exc).__name__)
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def stop(self, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> None:
        """Ask every start to stop after its batch in hand, and wait for them."""
        self._stopping.set()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout_s)
