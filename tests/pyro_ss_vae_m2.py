"""Pyro's semi-supervised VAE (M2), ``examples/vae/ss_vae_M2.py`` with its
``utils/custom_mlp.py``, re-typed as a user module; only the image width is adapted (the
digits' 64 pixels, ``input_size=64``), and
``nn.Softmax`` / ``nn.Sigmoid`` stand for the ``ClippedSoftmax`` / ``ClippedSigmoid`` that
Pyro 1.9 no longer has. ``main()`` wraps the guide in
``config_enumerate(ss_vae.guide, "parallel")``; :class:`EnumeratedSSVAE` does the same inside
the pair, so that pyrovae gets it as one object.
"""

from inspect import isclass

import pyro
import pyro.distributions as dist
import torch
import torch.nn as nn
from pyro.distributions.util import broadcast_shape
from pyro.infer import config_enumerate


class Exp(nn.Module):
    """a custom module for exponentiation of tensors"""

    def forward(self, val):
        return torch.exp(val)


class ConcatModule(nn.Module):
    """a custom module for concatenation of tensors"""

    def __init__(self, allow_broadcast=False):
        self.allow_broadcast = allow_broadcast
        super().__init__()

    def forward(self, *input_args):
        # we have a single object
        if len(input_args) == 1:
            # regardless of type, we don't care about single objects, we just index into it
            input_args = input_args[0]

        if torch.is_tensor(input_args):
            return input_args
        else:
            if self.allow_broadcast:
                shape = broadcast_shape(*[s.shape[:-1] for s in input_args]) + (-1,)
                input_args = [s.expand(shape) for s in input_args]
            return torch.cat(input_args, dim=-1)


class ListOutModule(nn.ModuleList):
    """a custom module for outputting a list of tensors from a list of nn modules"""

    def forward(self, *args, **kwargs):
        # loop over modules in self, apply same args
        return [mm.forward(*args, **kwargs) for mm in self]


def call_nn_op(op, epsilon):
    """a helper function that adds appropriate parameters when calling
    an nn module representing an operation like Softmax"""
    if op in [nn.Softmax, nn.LogSoftmax]:
        return op(dim=1)
    else:
        return op()


class MLP(nn.Module):
    def __init__(
        self,
        mlp_sizes,
        activation=nn.ReLU,
        output_activation=None,
        post_layer_fct=lambda layer_ix, total_layers, layer: None,
        post_act_fct=lambda layer_ix, total_layers, layer: None,
        epsilon_scale=None,
        allow_broadcast=False,
        use_cuda=False,
    ):
        super().__init__()
        assert len(mlp_sizes) >= 2, "Must have input and output layer sizes defined"
        input_size, hidden_sizes, output_size = mlp_sizes[0], mlp_sizes[1:-1], mlp_sizes[-1]
        assert isinstance(input_size, (int, list, tuple)), "input_size must be int, list, tuple"
        # everything in MLP will be concatted if it's multiple arguments
        last_layer_size = input_size if isinstance(input_size, int) else sum(input_size)
        all_modules = [ConcatModule(allow_broadcast)]
        for layer_ix, layer_size in enumerate(hidden_sizes):
            assert isinstance(layer_size, int), "Hidden layer sizes must be ints"
            cur_linear_layer = nn.Linear(last_layer_size, layer_size)
            # for numerical stability -- initialize the layer properly
            cur_linear_layer.weight.data.normal_(0, 0.001)
            cur_linear_layer.bias.data.normal_(0, 0.001)
            if use_cuda:
                cur_linear_layer = nn.DataParallel(cur_linear_layer)
            all_modules.append(cur_linear_layer)
            post_linear = post_layer_fct(layer_ix + 1, len(hidden_sizes), all_modules[-1])
            if post_linear is not None:
                all_modules.append(post_linear)
            all_modules.append(activation())
            post_activation = post_act_fct(layer_ix + 1, len(hidden_sizes), all_modules[-1])
            if post_activation is not None:
                all_modules.append(post_activation)
            last_layer_size = layer_size

        assert isinstance(output_size, (int, list, tuple)), "output_size must be int, list, tuple"
        if isinstance(output_size, int):
            all_modules.append(nn.Linear(last_layer_size, output_size))
            if output_activation is not None:
                all_modules.append(
                    call_nn_op(output_activation, epsilon_scale)
                    if isclass(output_activation)
                    else output_activation
                )
        else:
            # we're going to have a bunch of separate layers we can spit out (a tuple of outputs)
            out_layers = []
            for out_ix, out_size in enumerate(output_size):
                split_layer = []
                split_layer.append(nn.Linear(last_layer_size, out_size))
                act_out_fct = (
                    output_activation
                    if not isinstance(output_activation, (list, tuple))
                    else output_activation[out_ix]
                )
                if act_out_fct:
                    split_layer.append(
                        call_nn_op(act_out_fct, epsilon_scale)
                        if isclass(act_out_fct)
                        else act_out_fct
                    )
                out_layers.append(nn.Sequential(*split_layer))
            all_modules.append(ListOutModule(out_layers))
        self.sequential_mlp = nn.Sequential(*all_modules)

    def forward(self, *args, **kwargs):
        return self.sequential_mlp.forward(*args, **kwargs)


class SSVAE(nn.Module):
    """
    This class encapsulates the parameters (neural networks) and models & guides needed to train a
    semi-supervised variational auto-encoder on the MNIST image dataset

    :param output_size: size of the tensor representing the class label
    :param input_size: size of the tensor representing the image (64 for the digits)
    :param z_dim: size of the tensor representing the latent random variable z
    :param hidden_layers: a tuple (or list) of MLP layers to be used in the neural networks
    :param epsilon_scale: a small float value used to scale down the output of Softmax and
        Sigmoid operations in pytorch for numerical stability
    :param use_cuda: use GPUs for faster training
    :param aux_loss_multiplier: the multiplier to use with the auxiliary loss
    """

    def __init__(
        self,
        output_size=10,
        input_size=64,
        z_dim=50,
        hidden_layers=(500,),
        epsilon_scale=1e-7,
        config_enum=None,
        use_cuda=False,
        aux_loss_multiplier=None,
    ):
        super().__init__()
        self.output_size = output_size
        self.input_size = input_size
        self.z_dim = z_dim
        self.hidden_layers = hidden_layers
        self.epsilon_scale = epsilon_scale
        self.allow_broadcast = config_enum == "parallel"
        self.use_cuda = use_cuda
        self.aux_loss_multiplier = aux_loss_multiplier
        self.setup_networks()

    def setup_networks(self):
        z_dim = self.z_dim
        hidden_sizes = list(self.hidden_layers)
        self.encoder_y = MLP(
            [self.input_size] + hidden_sizes + [self.output_size],
            activation=nn.Softplus,
            output_activation=nn.Softmax,
            epsilon_scale=self.epsilon_scale,
            allow_broadcast=self.allow_broadcast,
            use_cuda=self.use_cuda,
        )
        self.encoder_z = MLP(
            [self.input_size + self.output_size] + hidden_sizes + [[z_dim, z_dim]],
            activation=nn.Softplus,
            output_activation=[None, Exp],
            allow_broadcast=self.allow_broadcast,
            use_cuda=self.use_cuda,
        )
        self.decoder = MLP(
            [z_dim + self.output_size] + hidden_sizes + [self.input_size],
            activation=nn.Softplus,
            output_activation=nn.Sigmoid,
            epsilon_scale=self.epsilon_scale,
            allow_broadcast=self.allow_broadcast,
            use_cuda=self.use_cuda,
        )
        if self.use_cuda:
            self.cuda()

    def model(self, xs, ys=None):
        """
        The model corresponds to the following generative process:
        p(z) = normal(0,I)              # handwriting style (latent)
        p(y|x) = categorical(I/10.)     # which digit (semi-supervised)
        p(x|y,z) = bernoulli(loc(y,z))   # an image
        loc is given by a neural network  `decoder`
        """
        pyro.module("ss_vae", self)
        batch_size = xs.size(0)
        options = dict(dtype=xs.dtype, device=xs.device)
        with pyro.plate("data"):
            prior_loc = torch.zeros(batch_size, self.z_dim, **options)
            prior_scale = torch.ones(batch_size, self.z_dim, **options)
            zs = pyro.sample("z", dist.Normal(prior_loc, prior_scale).to_event(1))
            alpha_prior = torch.ones(batch_size, self.output_size, **options) / (
                1.0 * self.output_size
            )
            ys = pyro.sample("y", dist.OneHotCategorical(alpha_prior), obs=ys)
            loc = self.decoder.forward([zs, ys])
            pyro.sample("x", dist.Bernoulli(loc, validate_args=False).to_event(1), obs=xs)
            # return the loc so we can visualize it later
            return loc

    def guide(self, xs, ys=None):
        """
        The guide corresponds to the following:
        q(y|x) = categorical(alpha(x))              # infer digit from an image
        q(z|x,y) = normal(loc(x,y),scale(x,y))  # infer the style from an image and the digit
        """
        with pyro.plate("data"):
            if ys is None:
                alpha = self.encoder_y.forward(xs)
                ys = pyro.sample("y", dist.OneHotCategorical(alpha))
            loc, scale = self.encoder_z.forward([xs, ys])
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    def classifier(self, xs):
        """classify an image (or a batch of images): a batch of one-hot class labels"""
        alpha = self.encoder_y.forward(xs)
        res, ind = torch.topk(alpha, 1)
        ys = torch.zeros_like(alpha).scatter_(1, ind, 1.0)
        return ys

    def model_classify(self, xs, ys=None):
        """
        this model is used to add an auxiliary (supervised) loss as described in the
        Kingma et al., "Semi-Supervised Learning with Deep Generative Models".
        """
        pyro.module("ss_vae", self)
        with pyro.plate("data"):
            if ys is not None:
                alpha = self.encoder_y.forward(xs)
                with pyro.poutine.scale(scale=self.aux_loss_multiplier):
                    pyro.sample("y_aux", dist.OneHotCategorical(alpha), obs=ys)

    def guide_classify(self, xs, ys=None):
        """dummy guide function to accompany model_classify in inference"""
        pass


class EnumeratedSSVAE(SSVAE):
    """The pair as ``main()`` trains it: the guide under ``config_enumerate(..., "parallel")``."""

    def guide(self, xs, ys=None):
        return config_enumerate(super().guide, "parallel")(xs, ys)
