"""The tasks a split model does, by name: what its back half returns and what that means downstream.

Registry contract: ``TASKS.get(name)`` is a :class:`TaskType` whose ``name`` is the registered name, the ``task``
a :class:`fcm.models.base.SplitModel` declares. Its fields are what the rest of fcm asks of a task, so no module
branches on task names: evaluators state which ``labels`` they score (:mod:`fcm.eval.evaluators`), ``evaluator:
fidelity`` means the task's ``fidelity_evaluator``, and wrapper-aware RDO protects its ``rdo_target`` unless told
otherwise (:mod:`fcm.rdo.settings`). A new task is one :class:`TaskType` registered here, its model and, if no
evaluator scores its labels yet, an evaluator.
"""

from __future__ import annotations

from dataclasses import dataclass

from fcm.registry import Registry


@dataclass(frozen=True)
class TaskType:
    """One task (see the module docstring)."""

    name: str
    #: what the back half returns, for people
    output: str
    #: the kind of ground truth that scores it (a dataset's ``task``: ``classification`` or ``detection``)
    labels: str
    #: the label-free evaluator (against the uncompressed model's own output) that ``evaluator: fidelity`` means
    fidelity_evaluator: str
    #: what wrapper-aware RDO's weights protect by default (:mod:`fcm.rdo.sensitivity`)
    rdo_target: str
    #: the output carries instance masks, scored (mask AP) where the ground truth has them
    masks: bool = False


#: task name → :class:`TaskType` (contract: the module docstring)
TASKS: Registry[TaskType] = Registry("task")

for _task in (
    TaskType("classification", "class logits (1×classes)", "classification", "fidelity", "kl"),
    TaskType("detection", "detections: boxes, labels, scores", "detection", "detection_fidelity", "features"),
    TaskType(
        "instance_segmentation",
        "detections with a mask per instance",
        "detection",
        "detection_fidelity",
        "features",
        masks=True,
    ),
):
    TASKS.add(_task.name, _task)
del _task


def get_task(name: str) -> TaskType:
    """The registered task ``name`` (:class:`fcm.errors.UnknownNameError` listing the known ones otherwise)."""
    return TASKS.get(name)
