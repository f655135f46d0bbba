"""Moving a site's plane data to another site's endpoints (``zeroui-db cutover``): the pilot's
cluster to the managed services of the cloud inventory, with proof.

One module per part: ``state`` (the record on the control machine that reruns, rollbacks
and the deploy read), ``tables`` (what a plane database holds, in copy order),
``checksums`` (the same digest computed on both sides, and the rows that differ),
``preflight`` (what must hold before anything changes, and the plan), ``freeze`` (the
source's app role stops writing), ``transfer`` (the copy, as the plane's owner on the
target), ``verify`` (every table, sequence and the receipt chain held against the source),
``switch`` (the target's audit and env files) and ``runner`` (the steps in order).
"""
