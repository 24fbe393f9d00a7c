"""The garbage collector of a service process, set for serving once it has started.

Start-up leaves some 200,000 long-lived objects (JAX, the encoder, the app), and
every full collection walks them all while requests wait: a pause of about 100
ms on a busy 2-core machine, which a full collection every few thousand
requests turns into the latency tail. `settle()` collects once, then moves
every object alive (start-up's) to the permanent generation (`gc.freeze`), so
later collections walk only what requests made (a full one then takes
microseconds). The thresholds stay Python's: young collections stay small and
short.

    app = create_app(..., settle_gc=True)   # settle() once the app has started
"""

from __future__ import annotations

import gc


def settle() -> None:
  """Collects, then freezes what is alive now out of the collector's reach."""
  gc.collect()
  gc.freeze()
