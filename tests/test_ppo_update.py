"""torchrl_gorl.training.PPOUpdate built from explicit arguments (no config): Adam steps per batch, stage values,
and the refusals of the one-graph step."""
import pytest
import torch
from tensordict import TensorDict

from torchrl.objectives import ClipPPOLoss

from torchrl_gorl import LatentPriorLoss, make_latent_actor, make_latent_ppo_loss, make_value_network
from torchrl_gorl.training import PPOUpdate


def _batch(actor, envs: int = 2, steps: int = 8, obs: int = 3) -> TensorDict:
    data = actor(TensorDict({"observation": torch.randn(envs, steps, obs)}, [envs, steps])).detach()
    done = torch.zeros(envs, steps, 1, dtype=torch.bool)
    data["next"] = TensorDict({"observation": torch.randn(envs, steps, obs), "reward": torch.randn(envs, steps, 1),
                               "done": done, "terminated": done.clone()}, [envs, steps])
    return data


def test_update_runs_epochs_of_minibatches_and_set_stage_moves_the_stage_values():
    torch.manual_seed(0)
    actor, critic = make_latent_actor(3, 2), make_value_network(3)
    prior = LatentPriorLoss(actor, coeff=5e-4)
    ppo = PPOUpdate(actor, critic, make_latent_ppo_loss(actor, critic, clip_epsilon=0.15), prior=prior, gamma=0.99,
                    epochs=3, minibatch_size=4, max_grad_norm=0.5)
    before = [p.detach().clone() for p in ppo.params]
    metrics = ppo.update(_batch(actor))
    assert {"train/loss_objective", "train/loss_critic", "train/loss_latent_prior", "train/grad_norm"} <= set(metrics)
    assert float(ppo.optimizer.state[ppo.params[0]]["step"]) == 3 * 4  # 3 epochs x (16 rows / 4)
    assert any(not torch.equal(a, b) for a, b in zip(before, ppo.params))
    ppo.set_stage({"clip_epsilon": 0.3, "latent_prior_coeff": 1e-3, "max_grad_norm": 1.0})
    assert ppo.loss.clip_epsilon.item() == pytest.approx(0.3) and prior.coeff.item() == pytest.approx(1e-3)
    assert ppo.max_grad_norm == 1.0
    ppo.reset_optimizer()
    assert not ppo.optimizer.state


def test_the_one_graph_step_refuses_other_losses_and_functional_ones():
    actor, critic = make_latent_actor(3, 2), make_value_network(3)
    class OtherLoss(ClipPPOLoss):  # FPOLoss and DPPOLoss are such subclasses
        pass

    with pytest.raises(ValueError, match="compile_step=True supports TorchRL's ClipPPOLoss .* not OtherLoss"):
        PPOUpdate(actor, critic, OtherLoss(actor, critic, functional=False), gamma=0.99, minibatch_size=4,
                  compile_step=True)
    with pytest.raises(ValueError, match="needs the losses built with functional=False"):
        PPOUpdate(actor, critic, make_latent_ppo_loss(actor, critic), gamma=0.99, minibatch_size=4, compile_step=True)
