"""IQL critics (expectile V, double Q) for GMPO and GMPG, from TorchRL's IQLLoss."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.modules import MLP, ValueOperator
from torchrl.objectives import IQLLoss

from torchrl_gorl.modules._utils import check_positive


def make_iql_critics(
    observation_dim: int,
    action_dim: int,
    *,
    num_cells: Sequence[int] = (256, 256),
    activation_class: type[nn.Module] = nn.ReLU,
    device: torch.device | str | None = None,
) -> tuple[ValueOperator, ValueOperator]:
    """``Q(s, a)`` (``("observation", "action") -> "state_action_value"``) and ``V(s)`` (``-> "state_value"``).

    GenerativeRL's IQL critics: MLPs with two hidden layers of 256 and ReLU. TorchRL's ``MLP``
    concatenates its inputs, so the Q network takes ``(observation, action)`` directly.

    Examples:
        >>> q, v = make_iql_critics(4, 2, num_cells=(32,))
        >>> import torch; from tensordict import TensorDict
        >>> td = TensorDict(observation=torch.randn(3, 4), action=torch.randn(3, 2), batch_size=[3])
        >>> q(td)["state_action_value"].shape, v(td)["state_value"].shape
        (torch.Size([3, 1]), torch.Size([3, 1]))
    """
    check_positive(observation_dim=observation_dim, action_dim=action_dim)
    q = MLP(in_features=observation_dim + action_dim, out_features=1, num_cells=list(num_cells),
            activation_class=activation_class, device=device)
    v = MLP(in_features=observation_dim, out_features=1, num_cells=list(num_cells),
            activation_class=activation_class, device=device)
    return (ValueOperator(q, in_keys=["observation", "action"], out_keys=["state_action_value"]),
            ValueOperator(v, in_keys=["observation"]))


class IQLCriticLoss(IQLLoss):
    """The critic half of TorchRL's :class:`~torchrl.objectives.IQLLoss`: expectile regression of ``V(s)``
    on the target double-Q and a TD(0) regression of each ``Q(s, a)`` on ``r + gamma (1 - terminated) V(s')``.

    IQL's own actor term needs a likelihood, which a generative policy does not have; GMPO and GMPG use
    the critics instead (:meth:`advantage`). Update the target Q networks with
    :class:`torchrl.objectives.SoftUpdate` (``tau = 0.005`` in GenerativeRL).

    Args:
        qvalue_network (TensorDictModule): ``Q(s, a)``, copied ``num_qvalue_nets`` times.
        value_network (TensorDictModule): ``V(s)``.

    Keyword Args:
        expectile (float): ``tau`` of the expectile loss. Defaults to 0.7 (GenerativeRL; 0.9 for antmaze).
        gamma (float): discount. Defaults to 0.99.
        num_qvalue_nets (int): Defaults to 2.
        loss_function (str): distance of the Q regression. Defaults to ``"l2"``.
        observation_key (NestedKey): what the Q and V networks read besides the action. Defaults to ``"observation"``.

    Default keys: IQLLoss's (``action``, ``state_action_value``, ``state_value``, ``("next", "reward")``,
    ``("next", "done")``, ``("next", "terminated")``). Output: ``loss_value``, ``loss_qvalue``.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from torchrl_gorl import IQLCriticLoss, make_iql_critics
        >>> loss_fn = IQLCriticLoss(*make_iql_critics(4, 2, num_cells=(32,)))
        >>> data = TensorDict(observation=torch.randn(8, 4), action=torch.randn(8, 2), batch_size=[8])
        >>> data["next"] = TensorDict(observation=torch.randn(8, 4), reward=torch.randn(8, 1),
        ...                           done=torch.zeros(8, 1, dtype=torch.bool), terminated=torch.zeros(8, 1, dtype=torch.bool),
        ...                           batch_size=[8])
        >>> out = loss_fn(data)
        >>> (out["loss_value"] + out["loss_qvalue"]).backward()
        >>> loss_fn.advantage(data).shape
        torch.Size([8])
    """

    def __init__(
        self,
        qvalue_network: TensorDictModule,
        value_network: TensorDictModule,
        *,
        expectile: float = 0.7,
        gamma: float = 0.99,
        num_qvalue_nets: int = 2,
        loss_function: str = "l2",
        observation_key="observation",
    ) -> None:
        if not 0 < expectile < 1:
            raise ValueError(f"expectile must be in (0, 1), got {expectile!r}.")
        if not 0 < gamma <= 1:
            raise ValueError(f"gamma must be in (0, 1], got {gamma!r}.")
        # IQLLoss takes its observation keys from the actor; a parameter-free stand-in names them
        observation_reader = TensorDictModule(nn.Identity(), in_keys=[observation_key], out_keys=["_iql_observation"])
        super().__init__(observation_reader, qvalue_network, value_network, num_qvalue_nets=num_qvalue_nets,
                         loss_function=loss_function, expectile=expectile)
        self.make_value_estimator(gamma=gamma)

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        loss_value, _ = self.value_loss(tensordict)
        loss_qvalue, _ = self.qvalue_loss(tensordict)
        return TensorDict(loss_value=loss_value, loss_qvalue=loss_qvalue)

    def min_qvalue(self, tensordict: TensorDictBase) -> torch.Tensor:
        """``min_j Q_target,j(s, a)``, shape ``[*B]``.

        Evaluated with the target parameters, which never require grad: the result is differentiable in
        the action (GMPG's pathwise gradient) but gives no gradient to any critic parameter.
        """
        td = self._vmap_qvalue_networkN0(tensordict.select(*self.qvalue_network.in_keys, strict=False),
                                         self.target_qvalue_network_params)
        return td.get(self.tensor_keys.state_action_value).min(0)[0].squeeze(-1)

    @torch.no_grad()
    def state_value(self, tensordict: TensorDictBase) -> torch.Tensor:
        td = tensordict.select(*self.value_network.in_keys, strict=False)
        with self.value_network_params.to_module(self.value_network):
            return self.value_network(td).get(self.tensor_keys.value).squeeze(-1)

    @torch.no_grad()
    def advantage(self, tensordict: TensorDictBase) -> torch.Tensor:
        """``min_j Q_target,j(s, a) - V(s)`` without gradients, shape ``[*B]``."""
        return self.min_qvalue(tensordict) - self.state_value(tensordict)
