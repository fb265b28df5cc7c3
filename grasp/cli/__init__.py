"""The console scripts besides the runner (grasp-run): grasp-tables and grasp-bench. The files under
scripts/ with the old names call these, so documented commands keep working in a checkout."""
