#!/usr/bin/env bash
cd /work/main
T="--recipe airbench94 --data .data/cifar10-jpeg.tar.gz --subset 5000 --test-subset 1000 --epochs 2 --set batch_size=500 --trials 20 --space lr=4:20:log,momentum=0.8:0.95 --device cpu --precision bfloat16 --out .data/m13/tune"
start=$(date +%s)
OMP_NUM_THREADS=1 fastcifar tune $T > .data/m13/tune-worker0.log 2>&1 &
sleep 3
OMP_NUM_THREADS=1 fastcifar tune $T > .data/m13/tune-worker1.log 2>&1
wait
echo "tune wall $(( $(date +%s) - start )) s (sharing the cores with a training)"
