"""The eBPF assembler as data (no kernel): instruction encoding, jump labels resolved to
relative offsets (counting the two-slot ld_imm64), and bad labels refused."""
from __future__ import annotations

import struct

import pytest

from lambdaplane.net import bpf
from lambdaplane.net.bpf import JEQ, JNE, Label


def _decode(code: bytes) -> list[tuple[int, int, int, int, int]]:
    """(opcode, dst, src, off, imm) per 8-byte slot."""
    out = []
    for i in range(0, len(code), 8):
        op, regs, off, imm = struct.unpack_from("<BBhi", code, i)
        out.append((op, regs & 0xF, regs >> 4, off, imm))
    return out


def test_encoding_of_plain_instructions() -> None:
    code = bpf.assemble([bpf.mov64_reg(6, 1), bpf.ldx_w(2, 6, 76), bpf.stx_w(10, -4, 7),
                         bpf.call(155), bpf.exit_insn()])
    assert _decode(code) == [(0xBF, 6, 1, 0, 0), (0x61, 2, 6, 76, 0), (0x63, 10, 7, -4, 0),
                             (0x85, 0, 0, 0, 155), (0x95, 0, 0, 0, 0)]


def test_forward_and_backward_jumps_count_slots_between() -> None:
    program = [
        Label("top"),
        bpf.jmp_imm(JEQ, 0, 0, "end"),  # slot 0
        bpf.ld_map_fd(1, 7),  # slots 1-2
        bpf.jmp32_imm(JNE, 4, 8, "top"),  # slot 3
        bpf.ja("end"),  # slot 4
        Label("end"),
        bpf.exit_insn(),  # slot 5
    ]
    slots = _decode(bpf.assemble(program))
    assert len(slots) == 6
    assert slots[0] == (0x15, 0, 0, 4, 0)  # 5 - 0 - 1
    assert slots[1] == (0x18, 1, 1, 0, 7) and slots[2] == (0, 0, 0, 0, 0)
    assert slots[3] == (0x56, 4, 0, -4, 8)  # 0 - 3 - 1
    assert slots[4] == (0x05, 0, 0, 0, 0)  # the next instruction: offset 0


def test_jmp32_register_compare_encoding() -> None:
    assert _decode(bpf.assemble([bpf.jmp32_reg(JNE, 1, 9, "x"), Label("x")])) == [
        (0x5E, 1, 9, 0, 0)]


def test_undefined_or_duplicate_labels_are_refused() -> None:
    with pytest.raises(ValueError, match="undefined"):
        bpf.assemble([bpf.ja("nowhere")])
    with pytest.raises(ValueError, match="twice"):
        bpf.assemble([Label("a"), Label("a"), bpf.exit_insn()])
