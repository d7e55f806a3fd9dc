#!/bin/bash
out=/tmp/s3/ab3; mkdir -p $out
for pair in 1 2; do
  for side in new base; do
    wt=/tmp/wt-base; [ $side = new ] && wt=/work/main
    name=ab3-raft-vm-$side-$pair
    pkill -f "ops.cli node --config"; rm -rf /tmp/scfchain-bench/*; sleep 3
    echo "$(date +%T) $name load $(cut -d' ' -f1 /proc/loadavg)" >> $out/rounds.log
    WT=$wt /tmp/s3/round.sh $name raft 3 voucher-mix 100000 > $out/$name.txt 2>&1
    grep "per committed tx" /tmp/s3/$name/report.md | sed "s/^/$name: /" >> $out/rounds.log
  done
done
echo done >> $out/rounds.log
