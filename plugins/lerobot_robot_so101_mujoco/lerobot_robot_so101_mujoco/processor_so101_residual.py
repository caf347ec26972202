"""The so101_residual policy reads the env's observations as they come and returns joint positions in its units:
no normalization, no device move (the policies run on numpy)."""

from lerobot.processor import make_policy_processor_pipelines


def make_so101_residual_pre_post_processors(config, dataset_stats=None):
    return make_policy_processor_pipelines(input_steps=[], output_steps=[])
