from sb3_bayes.continual.runner import SEQUENCES, ContinualResult, Task, make_task_env, run_sequence, save_result

__all__ = ["SEQUENCES", "ContinualResult", "Task", "make_task_env", "run_sequence", "save_result"]
