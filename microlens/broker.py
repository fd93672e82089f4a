"""The embedded default broker: kombu's filesystem transport, safe with concurrent processes.

kombu's own filesystem transport (5.x) creates a message file under its final name and
then writes into it, while a consumer lists the same folder and takes any ``*.msg`` file
without waiting for the writer's lock. A worker polling while beat or a web process sends
can therefore take an empty or half-written file: ``JSONDecodeError`` in the worker's
consumer, which stops the worker, and the message is gone (kombu deleted the file before
decoding it). This transport keeps kombu's folders, file names and settings and changes
two things:

- a message is written to a hidden name in the queue folder (``.<name>.msg.tmp``, which no
  listing takes), flushed to disk and only then renamed to ``<name>.msg``: a message file
  appears complete or not at all;
- a consumer claims a file by renaming it into ``processed_folder`` (one rename wins when
  workers race), decodes it and only then deletes it (or keeps it with
  ``store_processed``). A file that does not decode (left by a crash mid-write of an older
  version, a full disk) is moved into ``quarantine_folder`` with an error log naming it,
  and the consumer takes the next message.

Delivery is unchanged: kombu deletes a message as it hands it to the consumer and keeps it
in memory until acknowledged (``acks_late`` tasks) or restores it when the connection
closes; a worker killed meanwhile loses it, which costs a delay, not work: jobs live in
PostgreSQL and the broker only wakes workers. Selected by ``CELERY_BROKER_TRANSPORT`` in
the settings for the ``filesystem://`` URL only.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path
from queue import Empty
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

logger = logging.getLogger(__name__)

TEMPORARY_SUFFIX = ".tmp"


class Channel(filesystem.Channel):
    """kombu's filesystem channel with atomic writes and quarantined undecodable files."""

    # kombu's own classes disagree on the name of the second parameter (virtual: message,
    # filesystem: payload); it is always passed by position.
    def _put(self, queue: str, payload: dict[str, Any], **kwargs: Any) -> None:  # type: ignore[override]
        # Same name scheme as kombu: consumers take files in name (= time) order.
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        folder = Path(self.data_folder_out)
        temporary = folder / f".{name}{TEMPORARY_SUFFIX}"
        try:
            with open(temporary, "wb") as file:
                file.write(str_to_bytes(dumps(payload)))
                file.flush()
                # Renamed only once on disk, so no crash can leave a short file under a
                # name consumers take.
                os.fsync(file.fileno())
            os.replace(temporary, folder / name)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise ChannelError(f"Cannot add file {name!r} to {str(folder)!r}") from exc

    def _get(self, queue: str, timeout: float | None = None) -> dict[str, Any]:
        wanted = f"{queue}.msg"
        inbox = Path(self.data_folder_in)
        processed = Path(self.processed_folder)
        for name in sorted(os.listdir(inbox)):
            if name.partition(".")[2] != wanted:
                continue
            claimed = processed / name
            if not self._claim(inbox / name, claimed):
                continue
            try:
                content = claimed.read_bytes()
            except OSError as exc:
                raise ChannelError(f"Cannot read file {str(claimed)!r} from queue.") from exc
            try:
                payload = loads(bytes_to_str(content))
                if not isinstance(payload, dict):
                    raise ValueError(f"a message is a JSON object, not {type(payload).__name__}")
            except (ValueError, TypeError) as exc:
                self._quarantine(claimed, queue, len(content), exc)
                continue
            if not self.store_processed:
                claimed.unlink()
            return payload
        raise Empty()

    def _claim(self, source: Path, claimed: Path) -> bool:
        """Move a message file out of the queue folder; False if another consumer did."""
        for _attempt in range(2):
            try:
                # Same filesystem (both under the broker folder): exactly one consumer's
                # rename succeeds; the others find the file gone and go on.
                os.rename(source, claimed)
                return True
            except FileNotFoundError:
                if claimed.parent.is_dir():
                    return False
                # The processed folder was deleted (``up`` recreates it too): the message
                # is still in the queue folder.
                claimed.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ChannelError(f"Cannot move {str(source)!r} out of the queue") from exc
        return False

    def _quarantine(self, claimed: Path, queue: str, size: int, error: Exception) -> None:
        quarantine = Path(self.quarantine_folder)
        quarantine.mkdir(parents=True, exist_ok=True)
        target = quarantine / claimed.name
        os.replace(claimed, target)
        # The decoder's own message, never the file's content (a message carries task args).
        reason = type(error).__name__
        if isinstance(error, json.JSONDecodeError):
            reason += f": {error.msg}: char {error.pos}"
        logger.error(
            "broker message file does not decode, quarantined: file=%s queue=%s bytes=%d error=%s",
            target,
            queue,
            size,
            reason,
        )

    @property
    def quarantine_folder(self) -> str:
        default = Path(self.processed_folder).parent / "quarantine"
        return str(self.transport_options.get("quarantine_folder", default))


class Transport(filesystem.Transport):
    Channel = Channel
