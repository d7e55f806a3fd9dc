#!/bin/bash
cd /work/main
PY=.venv/bin/python
rm -rf /tmp/m15/net
echo "uptime at start: $(uptime)"
$PY -m node.ops.cli cluster up --dir /tmp/m15/net --consensus pbft --nodes 4 --detach > /tmp/m15/up.log 2>&1
echo "up rc=$?"
$PY -m node.ops.cli bench --target /tmp/m15/net --duration 170 --clients 16 --batch 100 --txs 250000 --out /tmp/m15/bench --quiet > /tmp/m15/bench.log 2>&1 &
BP=$!
sleep 25
$PY -m bench.reconfig --dir /tmp/m15/net --before 10 --after 25 --out /tmp/m15/reconfig.json > /tmp/m15/reconfig.log 2>&1
echo "reconfig rc=$?"
wait $BP
echo "bench rc=$?"
$PY -m node.ops.cli cluster down --dir /tmp/m15/net > /tmp/m15/down.log 2>&1
echo "uptime at end: $(uptime)"
echo DONE
