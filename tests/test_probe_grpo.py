"""The `grpo_step` probe on tiny models, its planted failures, and the pieces it is built from."""

from __future__ import annotations

import json

import pytest
import torch

from compat_matrix.spec.schema import GrpoSettings, Settings
from compat_tests.probes import memory
from compat_tests.probes.grpo_step import PROBE
from compat_tests.probes.grpo_batch import Rollout, collate, completion_mask
from compat_tests.rewards import REWARDS, get_reward, token_diversity
from tests.probe_fixtures import (  # noqa: F401
    break_batched_training,
    break_checkpointed_backward,
    freeze,
    freeze_input_embeddings,
    ignore_pixel_values,
    keep_logits_one_early,
    keep_generate_state,
    keep_generation_batch,
    make_context,
    need_image_inputs_in_training,
    need_labels_in_training,
    one_thread,
    prefer_image_token,
    share_first_row_mask,
    shift_decode_positions,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("key", ["llama", "qwen2_vl"])
def test_one_step_passes_and_records_details(key, dtype):
    ctx = make_context(key, dtype=dtype)
    outcome = PROBE.run(ctx)
    assert outcome.status == "pass", outcome.message
    details = outcome.details
    json.dumps(details, allow_nan=False)
    settings = ctx.settings.grpo
    assert len(details["group_rewards"]) == settings.prompts
    assert all(len(set(group)) == settings.group_size for group in details["group_rewards"])
    assert details["max_logprob_diff"] <= details["logprob_tolerance"]
    assert details["grad_norm_head"] > 0 and details["grad_norm_last_layer"] > 0
    assert (details["grad_norm_vision"] is not None) == (key == "qwen2_vl")
    assert details["last_layer"].endswith("layers.1")
    assert details["time_s"] > 0


def test_forward_ignoring_pixel_values_fails_grad_vision():
    outcome = PROBE.run(make_context("qwen2_vl", ignore_pixel_values))
    assert outcome.status == "fail"
    assert outcome.details["failed_checks"] == ["grad_vision"]
    assert "did not use the image" in outcome.message


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_generation_and_forward_disagreeing_fails_logprob_match(dtype):
    """bf16 as a GPU runs it: with the tiny models' INIT_STD the shift stays well above the tolerance
    (3.6x in bf16 on the CPU here, where unshifted bf16 steps reach at most 0.6x of it)."""
    outcome = PROBE.run(make_context("llama", shift_decode_positions, dtype=dtype))
    assert outcome.status == "fail"
    assert outcome.details["failed_checks"] == ["logprob_match"]
    assert outcome.details["max_logprob_diff"] > 3 * outcome.details["logprob_tolerance"]


@pytest.mark.parametrize("key", ["llama", "qwen2_vl"])
def test_an_unplanted_model_passes_in_bf16_with_room_under_the_tolerance(key):
    outcome = PROBE.run(make_context(key, dtype=torch.bfloat16))
    assert outcome.status == "pass", outcome.message
    assert outcome.details["max_logprob_diff"] < outcome.details["logprob_tolerance"] / 1.5


def test_frozen_model_fails_params_changed():
    outcome = PROBE.run(make_context("llama", freeze))
    assert outcome.status == "fail"
    assert "params_changed" in outcome.details["failed_checks"]
    assert "unchanged after the optimizer step (0 parameters require grad)" in outcome.message
    assert outcome.details["max_param_change"] == 0.0


def test_equal_rewards_are_a_harness_error_not_a_model_failure():
    # Tiny random models never emit EOS in 4 tokens, so every completion has the same length.
    settings = Settings(grpo=GrpoSettings(reward="completion_length"))
    outcome = PROBE.run(make_context("llama", settings=settings))
    assert outcome.status == "error"
    assert outcome.error_type == "NoLearningSignal"


def test_completion_mask_keeps_tokens_up_to_the_first_eos():
    completion = torch.tensor([[5, 2, 7, 0], [5, 6, 7, 8], [2, 2, 0, 0]])
    expected = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]], dtype=torch.bool)
    assert torch.equal(completion_mask(completion, [2, 9]), expected)


def test_collate_left_pads_token_inputs_and_stacks_the_rest():
    short = {"input_ids": torch.tensor([[5, 6]]), "attention_mask": torch.ones(1, 2, dtype=torch.long),
             "pixel_values": torch.full((4, 6), 1.0), "image_grid_thw": torch.tensor([[1, 2, 2]])}
    long = {"input_ids": torch.tensor([[7, 8, 9]]), "attention_mask": torch.ones(1, 3, dtype=torch.long),
            "pixel_values": torch.full((4, 6), 2.0), "image_grid_thw": torch.tensor([[1, 2, 2]])}
    batch = collate([short, long], pad_token_id=0)
    assert batch["input_ids"].tolist() == [[0, 5, 6], [7, 8, 9]]
    assert batch["attention_mask"].tolist() == [[0, 1, 1], [1, 1, 1]]
    assert batch["pixel_values"].shape == (8, 6) and batch["pixel_values"][4:].eq(2.0).all()
    assert batch["image_grid_thw"].tolist() == [[1, 2, 2]] * 2
    assert collate([short], pad_token_id=3, width=4)["input_ids"].tolist() == [[3, 3, 5, 6]]


def test_training_inputs_extend_per_token_inputs_as_generate_does():
    row = {
        "input_ids": torch.tensor([[1, 990, 5]]),
        "attention_mask": torch.ones(1, 3, dtype=torch.long),
        "token_type_ids": torch.tensor([[0, 1, 0]]),
        "cross_attention_mask": torch.tensor([[[[1, 0]], [[1, 0]], [[1, 1]]]]),
        "pixel_values": torch.zeros(1, 3, 4, 4),
    }
    rollout = Rollout(rows=[row], pad_token_id=0, width=4, completion=torch.tensor([[7, 2]]),
                      mask=torch.tensor([[True, False]]), sampled_logp=torch.zeros(1, 2), logit_scale=1.0)
    inputs = rollout.training_inputs([0])
    assert inputs["input_ids"].tolist() == [[0, 1, 990, 5, 7, 2]]
    assert inputs["attention_mask"].tolist() == [[0, 1, 1, 1, 1, 0]]
    assert inputs["token_type_ids"].tolist() == [[0, 0, 1, 0, 0, 0]]
    assert inputs["cross_attention_mask"][0, 4:].tolist() == [[[1, 1]], [[1, 1]]]
    assert torch.equal(inputs["pixel_values"], row["pixel_values"])
    assert rollout.training_inputs([0], "paligemma")["token_type_ids"].tolist() == [[0, 0, 1, 0, 1, 1]]
    assert rollout.micro_batches(1) == [[0]]


def test_rewards():
    assert token_diversity([4, 4, 4, 4]) == 0.25
    assert token_diversity([1, 3]) == pytest.approx(1 + 1 / 4)
    assert token_diversity([9]) == 1.0
    assert len({token_diversity(ids) for ids in ([1, 2, 3, 4], [5, 6, 7, 8], [1, 5, 9, 13])}) == 3
    assert get_reward("mean_token_id")([2, 4]) == 3.0
    assert get_reward("completion_length")([2, 4, 6]) == 3.0
    assert Settings().grpo.reward in REWARDS
    with pytest.raises(KeyError, match="known: token_diversity"):
        get_reward("accuracy")


def test_peak_memory_window_sees_a_new_allocation():
    memory.reset_peak_memory("cpu")
    baseline = memory.peak_memory_mb("cpu")
    block = torch.ones(64 * 2**20, dtype=torch.uint8)
    peak = memory.peak_memory_mb("cpu")
    del block
    assert baseline is not None and peak is not None
    assert peak - baseline >= 60


def test_state_kept_from_generate_fails_microbatch_match():
    outcome = PROBE.run(make_context("llama", keep_generate_state))
    assert outcome.status == "fail"
    assert outcome.details["failed_checks"] == ["microbatch_match"]
    assert "micro-batches of 2 differ from those on micro-batches of 1" in outcome.message
    assert outcome.details["max_microbatch_diff"]["2"] > 100 * outcome.details["logprob_tolerance"]


def test_state_sized_to_the_generation_batch_fails_train_forward():
    """The base model keeps generate()'s batch size: no training micro-batch size can run, so nothing trains."""
    outcome = PROBE.run(make_context("llama", keep_generation_batch))
    assert outcome.status == "fail"
    assert outcome.details["failed_checks"] == ["train_forward"]
    assert "a train-mode forward on a micro-batch of 1 raised RuntimeError: planted: state for 8 rows kept from generate()" in outcome.message


def test_the_other_size_is_compared_on_a_micro_batch_that_mixes_prompts():
    rollout = Rollout(rows=[{}] * 8, pad_token_id=0, width=1, completion=torch.zeros(8, 1), mask=torch.ones(8, 1, dtype=torch.bool),
                      sampled_logp=torch.zeros(8, 1), logit_scale=1.0)
    assert rollout.mixed_micro_batch(1, 4) == [0]
    assert rollout.mixed_micro_batch(2, 4) == [0, 4]
    assert rollout.mixed_micro_batch(3, 4) == [0, 1, 4]
    assert rollout.mixed_micro_batch(8, 4) == list(range(8))
    assert rollout.mixed_micro_batch(3, 3) == [0, 3, 6]  # 8 rows in groups of 3: the last group is short


def test_a_forward_that_mixes_up_rows_padding_fails_microbatch_match(monkeypatch):
    """Only a micro-batch holding two prompts (two left-padding widths) shows it: one of consecutive
    rows holds one prompt's copies, whose padding is the same."""
    outcome = PROBE.run(make_context("llama", share_first_row_mask))
    assert outcome.details["failed_checks"] == ["microbatch_match"], outcome.message
    consecutive = lambda self, size, group_size: self.micro_batches(size)[0]  # noqa: E731
    monkeypatch.setattr(Rollout, "mixed_micro_batch", consecutive)
    assert PROBE.run(make_context("llama", share_first_row_mask)).status == "pass"


def test_input_required_only_in_train_mode_fails_train_forward():
    outcome = PROBE.run(make_context("llama", need_labels_in_training))
    assert outcome.status == "fail"
    assert outcome.details["failed_checks"] == ["train_forward"]
    assert "train-mode forward on a micro-batch of 1 raised ValueError: labels are required when training" in outcome.message


def test_text_only_batch_that_breaks_training_fails_text_only_microbatch():
    """Trainers mix text-only rows into image-text runs; image+text training still works here."""
    outcome = PROBE.run(make_context("qwen2_vl", need_image_inputs_in_training))
    assert outcome.status == "fail"
    assert outcome.details["failed_checks"] == ["text_only_microbatch"]
    assert "a text-only micro-batch in train mode raised ValueError: planted: an image is required" in outcome.message


def test_training_forward_passes_logits_to_keep_as_trl_does():
    """TRL asks only for the logits that predict the completion; a model that keeps the wrong ones trains on them."""
    outcome = PROBE.run(make_context("llama", keep_logits_one_early))
    assert outcome.status == "fail"
    assert outcome.details["failed_checks"] == ["logprob_match"]


def test_a_forward_that_breaks_only_on_larger_micro_batches_fails_microbatch_match():
    """The other size's pass runs before training: its raise is told apart from one that stops all training."""
    outcome = PROBE.run(make_context("llama", break_batched_training))
    assert outcome.status == "fail"
    assert outcome.details["failed_checks"] == ["microbatch_match"]
    assert "micro-batches of 2 raised RuntimeError: planted: more than one row" in outcome.message


@pytest.mark.parametrize("key", ["llama", "qwen2_vl"])
def test_checkpointing_that_breaks_the_backward_fails_gradient_checkpointing(key):
    outcome = PROBE.run(make_context(key, break_checkpointed_backward))
    assert outcome.status == "fail"
    assert outcome.details["failed_checks"] == ["gradient_checkpointing"]
    assert "planted: recomputation" in outcome.message and "without it the same micro-batch trains" in outcome.message


@pytest.mark.parametrize("use_reentrant", [True, False])
def test_the_checkpointing_variant_in_settings_is_the_one_trained_with(use_reentrant):
    """Frozen input embeddings: reentrant checkpointing cuts the decoder layers' gradient, the
    non-reentrant variant (TRL 0.27+ on 4.x, transformers 5's default) does not."""
    settings = Settings(grpo=GrpoSettings(use_reentrant=use_reentrant))
    outcome = PROBE.run(make_context("llama", freeze_input_embeddings, settings=settings))
    assert outcome.details["use_reentrant"] is use_reentrant
    if use_reentrant:
        assert outcome.details["failed_checks"] == ["grad_last_layer"], outcome.message
    else:
        assert outcome.status == "pass", outcome.message


def test_checkpointing_off_in_settings_trains_without_it():
    settings = Settings(grpo=GrpoSettings(gradient_checkpointing=False))
    outcome = PROBE.run(make_context("llama", break_checkpointed_backward, settings=settings))
    assert outcome.status == "pass", outcome.message
    assert outcome.details["gradient_checkpointing"] is False


def test_sampling_never_emits_an_image_placeholder():
    """Without suppression the completions hold image tokens and the training forward raises
    ("Image features and image tokens do not match"), as SmolVLM's tiny model did in 5.24."""
    outcome = PROBE.run(make_context("qwen2_vl", prefer_image_token))
    assert outcome.status == "pass", outcome.message


def test_placeholder_token_ids_reads_every_family_spelling():
    from transformers import AutoConfig

    from compat_tests.probes.generate import placeholder_token_ids

    qwen = AutoConfig.for_model("qwen2_vl", image_token_id=991, video_token_id=992, vision_start_token_id=993)
    assert {991, 992, 993} <= set(placeholder_token_ids(qwen))
    llava = AutoConfig.for_model("llava", image_token_index=990)
    assert 990 in placeholder_token_ids(llava)
    assert placeholder_token_ids(AutoConfig.for_model("llama", pad_token_id=0, bos_token_id=1, eos_token_id=2)) == []
