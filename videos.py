"""Evaluation videos: an MP4 on disk and an animated GIF in TensorBoard."""

from __future__ import annotations

import io
import pathlib

import imageio.v2 as imageio
import numpy as np

from output_files import write_atomically


def write_mp4(frames: list[np.ndarray], path: pathlib.Path, fps: int, overwrite: bool) -> None:
    """An MP4 written atomically (output_files.write_atomically): a failed encode leaves no half a video."""
    write_atomically(path, lambda temporary: imageio.mimwrite(temporary, frames, fps=fps, macro_block_size=8), overwrite)


def write_video(frames: list[np.ndarray], path: pathlib.Path, writer, tag: str, step: int, fps: int) -> None:
    """MP4 on disk; an animated GIF in TensorBoard's image tab (its add_video needs moviepy 1.x). `path` is in
    the run's own directory: a resumed run that evaluates a step again replaces its own video of it."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    write_mp4(frames, path, fps, overwrite=True)
    small = [frame[::2, ::2] for frame in frames[::2]]  # keep the event file small
    gif = io.BytesIO()
    imageio.mimwrite(gif, small, format="GIF", duration=2000 / fps, loop=0)
    height, width, _ = small[0].shape
    image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=gif.getvalue())
    writer.file_writer.add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)
