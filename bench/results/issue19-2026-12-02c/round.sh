#!/bin/bash
# usage: round.sh NAME CONSENSUS NODES WORKLOAD TXS  -> per-thread CPU during measured load
name=$1; cons=$2; n=$3; wl=$4; txs=$5; shift 5
cd ${WT:-/work/main}
uptime > /tmp/s3/$name.uptime
/work/main/.venv/bin/python -m node.ops.cli bench --consensus $cons --nodes $n --workload $wl --txs $txs --duration 30 --clients 16 --batch 250 --quiet --out /tmp/s3/$name "$@" > /tmp/s3/$name.log 2>&1 &
bp=$!
while ! grep -q "warm-up done" /tmp/s3/$name.log; do sleep 0.5; if ! kill -0 $bp 2>/dev/null; then break; fi; done
/work/main/.venv/bin/python /tmp/threadcpu2.py 3 15 > /tmp/s3/$name.threads 2>&1
wait $bp
grep -E "c16 " /tmp/s3/$name.log | head -3
grep -A3 "round " /tmp/s3/$name/report.md | tail -1
cat /tmp/s3/$name.threads
