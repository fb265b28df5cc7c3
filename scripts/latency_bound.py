"""Plan calls against their latency bound: grasp.cli.latency."""

from grasp.cli.latency import main

if __name__ == "__main__":
    main()
