"""Our CEM and MPPI against stable-worldmodel's solvers: grasp.cli.peer."""

from grasp.cli.peer import main

if __name__ == "__main__":
    main()
