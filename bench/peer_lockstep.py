"""The peer side of bench/lockstep.py's protocol, shared by the peer scripts."""
import sys
import time


def lockstep(fn, per=1):
    """`ready`, then `fn` once per stdin line, printing its ms divided by `per`, until `quit`."""
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "quit":
            break
        t = time.perf_counter()
        fn()
        print(f"{(time.perf_counter() - t) * 1e3 / per:.3f}", flush=True)
