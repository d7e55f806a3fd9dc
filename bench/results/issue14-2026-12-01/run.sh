#!/bin/bash
# alternate before/after for each consensus, twice
PY=/work/main/.venv/bin/python
for rep in 1 2; do
for cfg in "solo 1" "raft 3" "pbft 4"; do
  set -- $cfg
  for side in before after; do
    if [ $side = before ]; then dir=/tmp/before14; mod=node.cli; else dir=/work/main; mod=node.ops.cli; fi
    echo "=== $side $1 $2 rep$rep $(date +%T) $(uptime | sed 's/.*load/load/')"
    (cd $dir && $PY -m $mod bench --nodes $2 --consensus $1 --txs 30000 --clients 16 --batch 500 --out /tmp/bench14/$side-$1-$rep --quiet 2>&1 | tail -15)
  done
done
done
echo DONE
