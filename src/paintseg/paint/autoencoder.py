"""A pretrained image autoencoder as a component: the pixels of a latent painter come from its decoder.

paintseg's latent painter (``GeneratorConfig.space: latent``) runs diffusion on the latents of a tiny distilled
autoencoder of the TAESD family (Ollin Boer Bohan, MIT licence), here **TAEF2**, the stand-in for the FLUX.2 VAE:
32 latent channels at 1/8 of the side, encoder and decoder 1.34 M parameters each. diffusers' ``AutoencoderTiny``
builds the TAESD layout but not TAEF2's pooling branch, so this module builds the architecture itself and loads the
released state dicts *strictly* (every key and shape must match).

Where the files come from: the public repository ``madebyollin/taesd`` ships ``taef2_encoder.pth`` and
``taef2_decoder.pth`` (plain ``nn.Sequential`` state dicts). Put both in one folder and name it in the generator
config (``autoencoder: path/to/taef2``); ``../shared/models/taef2`` holds them on the development machines.

Conventions (the repository's README): images in [0, 1] (not [-1, 1]), side a multiple of 8; latents roughly in
[-3, 3] with scale factor 1; the decoder soft-clamps its input with ``tanh(x / 3) * 3``. The painter works on
latents standardised per channel by the mean and standard deviation measured on its own training windows
(``PaintModel.normalise``; the statistics are stored with its weights), so that the diffusion noise schedule
(unit-variance data) fits.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from paintseg.errors import PaintsegError

FACTOR = 8  # the autoencoder's spatial reduction
ENCODER_FILE, DECODER_FILE = "encoder.pth", "decoder.pth"  # names inside a GEN folder's autoencoder/
SOURCE = "the public repository madebyollin/taesd (taef2_encoder.pth, taef2_decoder.pth; MIT licence)"
# sha256 of the released TAEF2 files (commit 5cccb12): a folder holding them is known to be TAEF2
KNOWN = {"10a4e1021e89d7551eaf161352da8dbd0b1aa83872ae28b150c1df1ce2f147b6": "taef2 encoder",
         "0a44a31e1ae59eb9dbf9359d24942fd3ef5928162c1800d97a28c61d51be0ab5": "taef2 decoder"}


class AutoencoderError(PaintsegError):
    """Autoencoder weights that cannot be found or loaded as given."""


def _conv(cin: int, cout: int, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=bias)


class _Block(nn.Module):
    """Three 3×3 convs with ReLUs, a 1×1 skip where widths differ, a ReLU after the sum; with ``pool`` a global
    branch (1×1 conv → GroupNorm(4) → ReLU → 1×1 conv) is added to the block's input first (TAEF2)."""

    def __init__(self, cin: int, cout: int, pool: bool = False):
        super().__init__()
        self.conv = nn.Sequential(_conv(cin, cout), nn.ReLU(), _conv(cout, cout), nn.ReLU(), _conv(cout, cout))
        self.skip = nn.Conv2d(cin, cout, 1, bias=False) if cin != cout else nn.Identity()
        self.fuse = nn.ReLU()
        self.pool = None
        if pool:
            wide = 4 * cin
            self.pool = nn.Sequential(nn.Conv2d(cin, wide, 1, bias=False), nn.GroupNorm(4, wide), nn.ReLU(),
                                      nn.Conv2d(wide, cin, 1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return self.fuse(self.conv(x) + self.skip(x))


class _SoftClamp(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(x / 3) * 3


def build_encoder(latent_channels: int = 32, width: int = 64, pool: bool = True) -> nn.Sequential:
    """The TAESD-family encoder (pool=True: TAEF2's last stage): 3 → ``latent_channels`` at 1/8 of the side."""
    stage = lambda last: [_Block(width, width, pool and last) for _ in range(3)]  # noqa: E731
    return nn.Sequential(
        _conv(3, width), _Block(width, width),
        _conv(width, width, 2, bias=False), *stage(False),
        _conv(width, width, 2, bias=False), *stage(False),
        _conv(width, width, 2, bias=False), *stage(True),
        _conv(width, latent_channels))


def build_decoder(latent_channels: int = 32, width: int = 64, pool: bool = True) -> nn.Sequential:
    """The mirror of :func:`build_encoder`: soft clamp, three stages of blocks each followed by a nearest 2×
    upsampling and a conv, a last block and a conv to RGB (pool=True: TAEF2's first stage)."""
    up = lambda: [nn.Upsample(scale_factor=2), _conv(width, width, bias=False)]  # noqa: E731
    return nn.Sequential(
        _SoftClamp(), _conv(latent_channels, width), nn.ReLU(),
        *[_Block(width, width, pool) for _ in range(3)], *up(),
        *[_Block(width, width) for _ in range(3)], *up(),
        *[_Block(width, width) for _ in range(3)], *up(),
        _Block(width, width), _conv(width, 3))


def _load_state(path: Path, what: str) -> dict[str, Tensor]:
    if not path.is_file():
        raise AutoencoderError(f"{path}: no autoencoder {what} here; get taef2_{what}.pth from {SOURCE} and put it in "
                               f"{path.parent}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's to replace
        raise AutoencoderError(f"{path}: not a PyTorch state dict that loads with weights_only ({type(e).__name__}); "
                               f"download taef2_{what}.pth again from {SOURCE}") from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise AutoencoderError(f"{path}: holds {type(state).__name__}, not a state dict of tensors; pass the "
                               f"taef2_{what}.pth of {SOURCE}")
    return state


def _infer(state: dict[str, Tensor]) -> tuple[int, int, bool]:
    """(latent channels, width, pooling branch) of an encoder or decoder state dict, from its key layout."""
    width = int(state["0.weight"].shape[0]) if state.get("0.weight") is not None and state["0.weight"].ndim == 4 \
        else int(state["1.weight"].shape[0])
    pool = any(".pool." in k for k in state)
    if "0.weight" in state and state["0.weight"].shape[1] == 3:  # an encoder: the last conv gives the latents
        last = max(int(k.split(".")[0]) for k in state)
        return int(state[f"{last}.weight"].shape[0]), width, pool
    return int(state["1.weight"].shape[1]), width, pool  # a decoder: its first conv reads them


def find_files(folder: Path) -> tuple[Path, Path]:
    """The encoder and decoder files of an autoencoder folder: ``encoder.pth`` / ``decoder.pth`` (a GEN folder's
    copy) or the released names ``*_encoder.pth`` / ``*_decoder.pth`` (e.g. taef2_encoder.pth)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AutoencoderError(f"{folder}: no such folder; give the folder that holds taef2_encoder.pth and "
                               f"taef2_decoder.pth (from {SOURCE})")
    found = []
    for what, plain in (("encoder", ENCODER_FILE), ("decoder", DECODER_FILE)):
        if (folder / plain).is_file():
            found.append(folder / plain)
            continue
        named = sorted(folder.glob(f"*_{what}.pth"))
        if len(named) != 1:
            listed = ", ".join(p.name for p in named) if named else "none"
            raise AutoencoderError(f"{folder}: expected one *_{what}.pth file, found {listed}; put exactly "
                                   f"taef2_{what}.pth there (from {SOURCE})")
        found.append(named[0])
    return found[0], found[1]


class TinyAutoencoder(nn.Module):
    """Encoder + decoder of the TAESD family; :meth:`encode` takes images in [-1, 1] (paintseg's convention) and
    :meth:`decode` returns them, converting to and from the autoencoder's [0, 1] on the way."""

    def __init__(self, latent_channels: int = 32, width: int = 64, pool: bool = True):
        super().__init__()
        self.latent_channels = latent_channels
        self.encoder = build_encoder(latent_channels, width, pool)
        self.decoder = build_decoder(latent_channels, width, pool)

    @staticmethod
    def _check(x: Tensor, channels: int, what: str) -> None:
        if x.ndim != 4 or x.shape[1] != channels:
            raise AutoencoderError(f"autoencoder {what}: expected a B×{channels}×H×W tensor, got {tuple(x.shape)}")

    def encode(self, images: Tensor) -> Tensor:
        """``B×3×H×W`` in [-1, 1] (H, W multiples of 8) → raw latents ``B×C×H/8×W/8``."""
        self._check(images, 3, "input")
        if images.shape[2] % FACTOR or images.shape[3] % FACTOR:
            raise AutoencoderError(f"autoencoder input is {images.shape[3]}x{images.shape[2]}; both sides must be "
                                   f"multiples of {FACTOR} (resize or pad the window)")
        return self.encoder((images.clamp(-1, 1) + 1) / 2)

    def decode(self, latents: Tensor) -> Tensor:
        """Raw latents ``B×C×h×w`` → images ``B×3×8h×8w`` in [-1, 1]."""
        self._check(latents, self.latent_channels, "latents")
        return (self.decoder(latents) * 2 - 1).clamp(-1, 1)


def load_autoencoder(folder: str | Path, device: str | torch.device = "cpu") -> TinyAutoencoder:
    """The autoencoder in ``folder`` (see :func:`find_files`), built from its state dicts' layout and loaded
    strictly, in eval mode without gradients."""
    encoder_file, decoder_file = find_files(Path(folder))
    encoder_state, decoder_state = _load_state(encoder_file, "encoder"), _load_state(decoder_file, "decoder")
    try:
        channels, width, pool = _infer(encoder_state)
        model = TinyAutoencoder(channels, width, pool)
    except (KeyError, ValueError, IndexError) as e:
        raise AutoencoderError(f"{encoder_file}: not a TAESD-family encoder ({type(e).__name__}: {e}); pass the "
                               f"taef2_encoder.pth of {SOURCE}") from None
    for part, state, file in ((model.encoder, encoder_state, encoder_file), (model.decoder, decoder_state,
                                                                              decoder_file)):
        try:
            part.load_state_dict(state, strict=True)
        except RuntimeError as e:
            first = "; ".join(str(e).splitlines()[1:3])[:400]
            raise AutoencoderError(f"{file}: does not fit the autoencoder its encoder describes ({channels} latent "
                                   f"channels, width {width}, pooling {'on' if pool else 'off'}): {first}; pass the "
                                   f"matching pair of files from {SOURCE}") from None
    model.requires_grad_(False)
    return model.to(device).eval()


def copy_autoencoder(source: str | Path, folder: Path) -> Path:
    """Copy an autoencoder's two files into ``folder`` as encoder.pth / decoder.pth (a GEN folder's
    ``autoencoder/``, so that the generator paints without the original path); returns ``folder``."""
    import shutil

    encoder_file, decoder_file = find_files(Path(source))
    folder.mkdir(parents=True, exist_ok=True)
    for file, name in ((encoder_file, ENCODER_FILE), (decoder_file, DECODER_FILE)):
        target = folder / name
        if not target.is_file() or target.stat().st_size != file.stat().st_size:
            shutil.copyfile(file, target.with_suffix(".partial"))
            target.with_suffix(".partial").replace(target)
    return folder
