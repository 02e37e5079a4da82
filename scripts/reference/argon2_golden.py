"""Golden Argon2id hash for backend/server/src/web/auth.rs, from the reference C implementation
(argon2-cffi's bindings), with the argon2 crate's default parameters (m=19456 KiB, t=2, p=1, 32 bytes).

    python3 -m venv /tmp/a2 && /tmp/a2/bin/pip install argon2-cffi && /tmp/a2/bin/python scripts/reference/argon2_golden.py
"""
from argon2.low_level import Type, hash_secret

print(hash_secret(b"password", b"somesaltsomesalt", time_cost=2, memory_cost=19456,
                  parallelism=1, hash_len=32, type=Type.ID).decode())
