"""``python -m benchmarks.peers``: see `benchmarks.peers.harness`."""

from benchmarks.peers.harness import main

if __name__ == "__main__":
    main()
