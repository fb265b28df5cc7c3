"""Plan-call speed and memory of the planners: grasp.cli.bench (console script grasp-bench)."""

from grasp.cli.bench import main

if __name__ == "__main__":
    main()
