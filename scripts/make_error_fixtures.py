"""Writes the model files behind the model-file error tests (test/fixtures/models-bad).

Each file is a mistake users make: an empty or cut-off download, a Git LFS
pointer or web page saved in place of the model, a zip that is not TorchScript,
weights saved with torch.save instead of an exported model, and TorchScript that
a newer PyTorch wrote. Run with /usr/bin/python3 (it needs torch).
"""
import io
import os
import zipfile

import torch
from torch import nn

OUT = os.path.join(os.path.dirname(__file__), '..', 'test', 'fixtures', 'models-bad')
FIXTURES = os.path.join(os.path.dirname(__file__), '..', 'test', 'fixtures')
DATE = (2026, 1, 1, 0, 0, 0)


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return torch.relu(self.fc(x))


class ToCuda(nn.Module):
    """A forward that moves its input to a GPU, as code written for one often does."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x.to(torch.device('cuda')))


def write(name, data):
    with open(os.path.join(OUT, name), 'wb') as f:
        f.write(data)


def rezip(source, edit):
    """Copies a zip, passing each (name, bytes) through edit (None drops the entry)."""
    out = io.BytesIO()
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(out, 'w', zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            kept = edit(info.filename, zin.read(info.filename))
            if kept is not None:
                zout.writestr(zipfile.ZipInfo(info.filename, DATE), kept)
    return out.getvalue()


def saved(obj, **kwargs):
    buffer = io.BytesIO()
    torch.save(obj, buffer, **kwargs)
    return buffer.getvalue()


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    net = TinyNet().eval()
    good = os.path.join(FIXTURES, 'mlp_scripted.pt')
    with open(good, 'rb') as f:
        good_bytes = f.read()

    write('empty.pt', b'')
    write('truncated.pt', good_bytes[: len(good_bytes) * 6 // 10])
    write('lfs_pointer.pt', b'version https://git-lfs.github.com/spec/v1\n'
          b'oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 46827520\n')
    write('web_page.pt', b'<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>Please sign in</body></html>\n')
    write('random.pt', bytes((i * 131 + 7) % 251 for i in range(2048)))

    other = io.BytesIO()
    with zipfile.ZipFile(other, 'w') as z:
        z.writestr(zipfile.ZipInfo('weights/readme.txt', DATE), 'not a model\n')
        z.writestr(zipfile.ZipInfo('weights/values.csv', DATE), '1,2,3\n')
    write('other_zip.pt', other.getvalue())

    # The common mistake: torch.save instead of torch.jit.script/trace + save.
    write('state_dict.pt', saved(net.state_dict()))
    write('checkpoint.pt', saved({'epoch': 3, 'model_state_dict': net.state_dict(), 'best_accuracy': 0.9}))
    write('pickled_module.pt', saved(net))
    # (The pre-1.6 format keys storages by Python object ids: this file's bytes differ on every run.)
    write('legacy_state_dict.pt', saved(net.state_dict(), _use_new_zipfile_serialization=False))

    # TorchScript from a newer PyTorch: a file format version beyond libtorch
    # 1.13's (10), and code calling an operator that 1.13 does not have
    # (aten::scaled_dot_product_attention arrived in PyTorch 2.0).
    scripted = io.BytesIO()
    torch.jit.save(torch.jit.script(net), scripted)
    scripted.seek(0)
    write('newer_format.pt', rezip(scripted, lambda name, data: b'11\n' if name.endswith('/version') else data))

    def newer_op(name, data):
        if name.endswith('code/__torch__.py'):
            assert b'torch.relu(' in data, data
            return data.replace(b'torch.relu(', b'torch.scaled_dot_product_attention(', 1)
        if name.endswith('code/__torch__.py.debug_pkl'):
            return None
        return data

    scripted.seek(0)
    write('newer_operator.pt', rezip(scripted, newer_op))

    # TorchScript-shaped archives with damaged contents: libtorch's own checks.
    scripted.seek(0)
    write('damaged_pickle.pt', rezip(scripted, lambda name, data: b'\x80\x02not a pickle' if name.endswith('/data.pkl') else data))
    flipped = bytearray(scripted.getvalue())
    with zipfile.ZipFile(io.BytesIO(bytes(flipped))) as z:
        header = z.getinfo('archive/data/0').header_offset
    name_len, extra_len = int.from_bytes(flipped[header + 26:header + 28], 'little'), int.from_bytes(flipped[header + 28:header + 30], 'little')
    flipped[header + 30 + name_len + extra_len + 5] ^= 0xFF  # a byte of the first tensor
    write('bad_checksum.pt', bytes(flipped))

    # Crafted or damaged inside a well-formed archive; each was found by
    # npm run fuzz. libtorch 1.13 trusts these contents: a pickle opcode that
    # pops from an empty stack segfaults its unpickler (data.pkl at load, a
    # .debug_pkl only when it formats an error during forward); a tensor
    # record shorter than the tensor reads out of bounds; mangled code
    # segfaults its TorchScript importer.
    traced = os.path.join(FIXTURES, 'mlp_traced.pt')

    def bad_opcode(name, data):
        return data[:2] + b'\x81' + data[3:] if name.endswith('/constants.pkl') else data

    def bad_debug_pkl(name, data):
        return data[:2] + b'b' + data[3:] if name.endswith('modules/linear.py.debug_pkl') else data

    def short_record(name, data):
        return data[:4] if name.endswith('/data/0') else data

    def mangled_code(name, data):
        if name.endswith('code/__torch__/torch/nn/modules/linear.py'):
            assert b'__parameters__' in data
            return data.replace(b'__parameters__', b'__torch__', 1)
        return data

    write('bad_opcode.pt', rezip(traced, bad_opcode))
    write('bad_debug_pkl.pt', rezip(good, bad_debug_pkl))
    write('short_tensor_record.pt', rezip(good, short_record))
    write('empty_tensor_record.pt', rezip(traced, lambda name, data: b'' if name.endswith('/data/0') else data))
    write('crashes_libtorch.pt', rezip(good, mangled_code))

    # A loop that never ends in practice: 2**31 - 1 calls of a submodule per forward.
    def endless(name, data):
        if name.endswith('code/__torch__.py'):
            assert b'range(torch.add(_0, 1))' in data
            return data.replace(b'range(torch.add(_0, 1))', b'range(torch.add(_0, 2147483647))', 1)
        return data

    write('endless_loop.pt', rezip(os.path.join(FIXTURES, 'dynamic_scripted.pt'), endless))

    cuda = io.BytesIO()
    torch.jit.save(torch.jit.script(ToCuda()), cuda)
    write('cuda_forward.pt', rezip(io.BytesIO(cuda.getvalue()), lambda name, data: data))


if __name__ == '__main__':
    main()
