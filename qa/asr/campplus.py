# The CAM++ network definition below (FCM, TDNN, CAM dense blocks) is adapted from
# 3D-Speaker, https://github.com/modelscope/3D-Speaker/tree/main/speakerlab/models/campplus
# Copyright 3D-Speaker (https://github.com/alibaba-damo-academy/3D-Speaker). All Rights Reserved.
# Licensed under the Apache License, Version 2.0 (http://www.apache.org/licenses/LICENSE-2.0).
# Changes: training-only checkpointing removed, code restyled; the pyannote wrapper is new.
"""CAM++ speaker embedding (3D-Speaker, zh+en) wrapped as a pyannote.audio `Model`.

pyannote's diarization pipeline only accepts a `pyannote.audio.Model` as its embedding, and
the offline weights we have are CAM++ (a plain state dict), so this module defines the
network and the wrapper. The wrapper is what makes the pipeline fast on CPU: it computes
the fbank once per distinct chunk, drops the frames of other speakers, and runs the
network on a whole batch of length-sorted, self-repeat-padded feature sequences instead of
one chunk at a time.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
import torchaudio.compliance.kaldi as kaldi
from pyannote.audio import Model
from torch import nn

from qa.errors import ModelNotFoundError

SAMPLE_RATE = 16000
FEAT_DIM = 80
EMBEDDING_DIM = 192


# --------------------------------------------------------------------------- network


class BasicResBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(
            in_planes, planes, kernel_size=3, stride=(stride, 1), padding=1, bias=False
        )
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != self.expansion * planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(
                    in_planes,
                    self.expansion * planes,
                    kernel_size=1,
                    stride=(stride, 1),
                    bias=False,
                ),
                nn.BatchNorm2d(self.expansion * planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class FCM(nn.Module):
    def __init__(self, m_channels: int = 32, feat_dim: int = FEAT_DIM) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, m_channels, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(m_channels)
        self.layer1 = nn.Sequential(
            BasicResBlock(m_channels, m_channels, stride=2), BasicResBlock(m_channels, m_channels)
        )
        self.layer2 = nn.Sequential(
            BasicResBlock(m_channels, m_channels, stride=2), BasicResBlock(m_channels, m_channels)
        )
        self.conv2 = nn.Conv2d(
            m_channels, m_channels, kernel_size=3, stride=(2, 1), padding=1, bias=False
        )
        self.bn2 = nn.BatchNorm2d(m_channels)
        self.out_channels = m_channels * (feat_dim // 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x.unsqueeze(1))))
        out = self.layer2(self.layer1(out))
        out = F.relu(self.bn2(self.conv2(out)))
        b, c, f, t = out.shape
        return out.reshape(b, c * f, t)


class StatsPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=-1)
        std = x.std(dim=-1, unbiased=True) if x.size(-1) > 1 else torch.zeros_like(mean) + 1e-2
        return torch.cat([mean, std], dim=-1)


class TDNNLayer(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        bias: bool = False,
    ) -> None:
        super().__init__()
        if padding < 0:
            padding = (kernel_size - 1) // 2 * dilation
        self.linear = nn.Conv1d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            bias=bias,
        )
        self.nonlinear = nn.Sequential(
            OrderedDict(batchnorm=nn.BatchNorm1d(out_channels), relu=nn.ReLU(inplace=True))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlinear(self.linear(x))


class CAMLayer(nn.Module):
    def __init__(
        self,
        bn_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        padding: int,
        dilation: int,
        bias: bool,
        reduction: int = 2,
    ) -> None:
        super().__init__()
        self.linear_local = nn.Conv1d(
            bn_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            bias=bias,
        )
        self.linear1 = nn.Conv1d(bn_channels, bn_channels // reduction, 1)
        self.relu = nn.ReLU(inplace=True)
        self.linear2 = nn.Conv1d(bn_channels // reduction, out_channels, 1)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear_local(x)
        context = x.mean(-1, keepdim=True) + self.seg_pooling(x)
        return y * self.sigmoid(self.linear2(self.relu(self.linear1(context))))

    @staticmethod
    def seg_pooling(x: torch.Tensor, seg_len: int = 100) -> torch.Tensor:
        seg = F.avg_pool1d(x, kernel_size=seg_len, stride=seg_len, ceil_mode=True)
        seg = seg.unsqueeze(-1).expand(*seg.shape, seg_len).reshape(*seg.shape[:-1], -1)
        return seg[..., : x.shape[-1]]


class CAMDenseTDNNLayer(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        bn_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.nonlinear1 = nn.Sequential(
            OrderedDict(batchnorm=nn.BatchNorm1d(in_channels), relu=nn.ReLU(inplace=True))
        )
        self.linear1 = nn.Conv1d(in_channels, bn_channels, 1, bias=False)
        self.nonlinear2 = nn.Sequential(
            OrderedDict(batchnorm=nn.BatchNorm1d(bn_channels), relu=nn.ReLU(inplace=True))
        )
        padding = (kernel_size - 1) // 2 * dilation
        self.cam_layer = CAMLayer(
            bn_channels, out_channels, kernel_size, stride, padding, dilation, bias
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cam_layer(self.nonlinear2(self.linear1(self.nonlinear1(x))))


class CAMDenseTDNNBlock(nn.ModuleList):
    def __init__(
        self,
        num_layers: int,
        in_channels: int,
        out_channels: int,
        bn_channels: int,
        kernel_size: int,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        for i in range(num_layers):
            self.add_module(
                f"tdnnd{i + 1}",
                CAMDenseTDNNLayer(
                    in_channels + i * out_channels,
                    out_channels,
                    bn_channels,
                    kernel_size,
                    dilation=dilation,
                ),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = torch.cat([x, layer(x)], dim=1)
        return x


class TransitLayer(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, bias: bool = True) -> None:
        super().__init__()
        self.nonlinear = nn.Sequential(
            OrderedDict(batchnorm=nn.BatchNorm1d(in_channels), relu=nn.ReLU(inplace=True))
        )
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.nonlinear(x))


class DenseLayer(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, bias: bool = False) -> None:
        super().__init__()
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=bias)
        self.nonlinear = nn.Sequential(
            OrderedDict(
                batchnorm=nn.BatchNorm1d(out_channels, affine=False), relu=nn.ReLU(inplace=True)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            return self.nonlinear(self.linear(x.unsqueeze(-1)).squeeze(-1))
        return self.linear(x)


class CAMPPlus(nn.Module):
    """CAM++: (batch, frames, 80) mean-normalised log-mel fbank -> (batch, embedding_size)."""

    def __init__(
        self,
        feat_dim: int = FEAT_DIM,
        embedding_size: int = EMBEDDING_DIM,
        growth_rate: int = 32,
        bn_size: int = 4,
        init_channels: int = 128,
    ) -> None:
        super().__init__()
        self.head = FCM(feat_dim=feat_dim)
        channels = self.head.out_channels
        self.xvector = nn.Sequential(
            OrderedDict(
                tdnn=TDNNLayer(channels, init_channels, 5, stride=2, dilation=1, padding=-1)
            )
        )
        channels = init_channels
        for i, (num_layers, kernel_size, dilation) in enumerate(
            [(12, 3, 1), (24, 3, 2), (16, 3, 2)]
        ):
            self.xvector.add_module(
                f"block{i + 1}",
                CAMDenseTDNNBlock(
                    num_layers, channels, growth_rate, bn_size * growth_rate, kernel_size, dilation
                ),
            )
            channels = channels + num_layers * growth_rate
            self.xvector.add_module(f"transit{i + 1}", TransitLayer(channels, channels // 2, False))
            channels //= 2
        self.xvector.add_module(
            "out_nonlinear",
            nn.Sequential(
                OrderedDict(batchnorm=nn.BatchNorm1d(channels), relu=nn.ReLU(inplace=True))
            ),
        )
        self.xvector.add_module("stats", StatsPool())
        self.xvector.add_module("dense", DenseLayer(channels * 2, embedding_size, False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.xvector(self.head(x.permute(0, 2, 1)))


# --------------------------------------------------------------------------- features


def fbank(waveform: torch.Tensor) -> torch.Tensor:
    """80-dim Kaldi log-mel fbank (25 ms / 10 ms) of a (num_samples,) waveform at 16 kHz."""
    return kaldi.fbank(
        waveform.unsqueeze(0), num_mel_bins=FEAT_DIM, sample_frequency=SAMPLE_RATE, dither=0.0
    )


def repeat_pad(feats: torch.Tensor, length: int) -> torch.Tensor:
    """Pad by repeating the sequence itself: the padding has the same speaker's statistics,
    so CAM++'s context pooling and stats pooling barely notice it (zeros would)."""
    if feats.shape[0] >= length:
        return feats[:length]
    reps = -(-length // feats.shape[0])
    return feats.repeat(reps, 1)[:length]


# --------------------------------------------------------------------------- pyannote model


class CamPlusPlus(Model):
    """CAM++ as a pyannote embedding model: `forward(waveforms, weights)` -> (batch, 192).

    `weights` are pyannote's per-frame speaker masks (one row per waveform); frames where the
    speaker is not active are dropped before the network. Rows with less than
    `min_speech` seconds of the speaker give NaN, which pyannote's clustering skips.

    `batch_frames` bounds the padded frames run through the network at once (memory), and
    `max_pad_ratio` bounds the padding waste: sequences are sorted by length and a new
    sub-batch starts when the longest would be more than that ratio of the shortest.
    `batched=False` runs one sequence at a time (the reference the batched path is
    measured against).
    """

    def __init__(
        self,
        checkpoint: str | Path,
        *,
        min_speech: float = 0.25,
        batch_frames: int = 8000,
        max_pad_ratio: float = 1.3,
        batched: bool = True,
    ) -> None:
        super().__init__(sample_rate=SAMPLE_RATE, num_channels=1)
        self.campplus = CAMPPlus(feat_dim=FEAT_DIM, embedding_size=EMBEDDING_DIM)
        path = Path(checkpoint)
        if not path.is_file():
            raise ModelNotFoundError("CAM++ state dict not found", file=str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.campplus.load_state_dict(state, strict=True)
        self.campplus.eval()
        # frozen TorchScript folds batch norms into convolutions: ~25 % less CPU per frame.
        # Not a registered submodule, so the state dict stays the plain CAM++ one.
        self.__dict__["_net"] = _freeze(self.campplus)
        self.min_frames = max(1, round(min_speech * 100))
        self.batch_frames = batch_frames
        self.max_pad_ratio = max_pad_ratio
        self.batched = batched
        self.dimension = EMBEDDING_DIM

    def _features(
        self, waveforms: torch.Tensor, weights: torch.Tensor | None
    ) -> list[torch.Tensor | None]:
        """Per row: the speaker's own mean-normalised fbank frames, or None if too few."""
        out: list[torch.Tensor | None] = []
        last_wave: torch.Tensor | None = None
        last_feats: torch.Tensor | None = None
        for i in range(waveforms.shape[0]):
            wave = waveforms[i, 0]
            if weights is not None and float(weights[i].sum()) <= 0:
                out.append(None)
                continue
            # pyannote sends each chunk once per local speaker: reuse its fbank
            if last_wave is None or not torch.equal(wave, last_wave):
                last_wave, last_feats = wave, fbank(wave)
            feats = last_feats
            if weights is not None:
                mask = (
                    F.interpolate(
                        weights[i][None, None].float(), size=feats.shape[0], mode="nearest"
                    )[0, 0]
                    > 0.5
                )
                feats = feats[mask]
            if feats.shape[0] < self.min_frames:
                out.append(None)
                continue
            out.append(feats - feats.mean(dim=0, keepdim=True))
        return out

    def _embed(self, feats: list[torch.Tensor]) -> torch.Tensor:
        net = self.__dict__["_net"]
        if not self.batched:
            return torch.cat([net(f[None]) for f in feats])
        order = sorted(range(len(feats)), key=lambda k: feats[k].shape[0])
        result = torch.empty(len(feats), EMBEDDING_DIM)
        start = 0
        while start < len(order):
            shortest = feats[order[start]].shape[0]
            end = start + 1
            while end < len(order):
                longest = feats[order[end]].shape[0]
                if (
                    longest > self.max_pad_ratio * shortest
                    or longest * (end - start + 1) > self.batch_frames
                ):
                    break
                end += 1
            group = order[start:end]
            length = feats[group[-1]].shape[0]
            batch = torch.stack([repeat_pad(feats[k], length) for k in group])
            result[group] = net(batch)
            start = end
        return result

    def forward(self, waveforms: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        feats = self._features(waveforms, weights)
        embeddings = torch.full((len(feats), EMBEDDING_DIM), float("nan"))
        keep = [i for i, f in enumerate(feats) if f is not None]
        if keep:
            with torch.inference_mode():
                embeddings[keep] = self._embed([feats[i] for i in keep])
        return embeddings


def _freeze(net: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """Trace and freeze for inference; the eager module if this torch build cannot."""
    try:
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(net, torch.randn(2, 200, FEAT_DIM))
            return torch.jit.optimize_for_inference(torch.jit.freeze(traced))
    except Exception:  # noqa: BLE001 - any tracing failure leaves the exact eager path
        return net
