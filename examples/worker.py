"""An arq worker sending KSeF batches: run one per machine (or several), all pointing at the same Redis.

export KSEF_ASYNC_QUEUE_URL=redis://redis.internal:6379/0    # the job queue
export KSEF_ASYNC_LIMITS_URL=redis://redis.internal:6379/1   # KSeF limits shared by every worker
export KSEF_TOKEN_5265877635=...                              # one token per context this worker may send for
python examples/worker.py
"""

from __future__ import annotations

from ksef_async.workers import main

if __name__ == "__main__":
    main()
