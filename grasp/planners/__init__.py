"""Planners behind one batch-first interface (see base.Planner)."""

from grasp.planners.base import PlanResult, Planner, WarmStart, shift_plan
from grasp.planners.cem import CEMPlanner, ICEMPlanner
from grasp.planners.gd import GDPlanner
from grasp.planners.grasp import GraspPlanner, LatCoPlanner
from grasp.planners.factory import build, planner_config, tuned_planner_config
from grasp.planners.mppi import MPPIPlanner

__all__ = ["CEMPlanner", "GDPlanner", "GraspPlanner", "ICEMPlanner", "LatCoPlanner", "MPPIPlanner",
           "PlanResult", "Planner", "WarmStart", "build", "planner_config", "shift_plan",
           "tuned_planner_config"]
