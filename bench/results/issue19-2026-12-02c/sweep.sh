#!/bin/bash
# per cluster: cash (new), then voucher and warehouse pairs base/new, interleaved
out=/tmp/s3/sw; mkdir -p $out
for cfg in "solo 1" "raft 3" "pbft 4"; do
  set -- $cfg
  for wl_side in "cash-transfer new" "voucher-mix base" "voucher-mix new" "warehouse-trade base" "warehouse-trade new"; do
    set -- $cfg $wl_side
    cons=$1; n=$2; wl=$3; side=$4
    case "$cons-$wl" in
      solo-cash-transfer) txs=450000;; raft-cash-transfer) txs=250000;; pbft-cash-transfer) txs=130000;;
      solo-*) txs=160000;; raft-*) txs=100000;; pbft-*) txs=70000;;
    esac
    wt=/tmp/wt-base; [ $side = new ] && wt=/work/main
    name=sw-$cons$n-$wl-$side
    pkill -f "ops.cli node --config"; rm -rf /tmp/scfchain-bench/*; sleep 3
    echo "$(date +%T) $name load $(cut -d' ' -f1 /proc/loadavg)" >> $out/rounds.log
    WT=$wt /tmp/s3/round.sh $name $cons $n $wl $txs > $out/$name.txt 2>&1
    grep "per committed tx" /tmp/s3/$name/report.md | sed "s/^/$name: /" >> $out/rounds.log
  done
done
echo done >> $out/rounds.log
