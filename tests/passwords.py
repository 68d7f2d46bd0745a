"""The test process hashes passwords with PBKDF2 at 1,000 iterations, not Django's
1,000,000 (a quarter of a second a login here): the tests count logins, they do not time
them. The hash names its iterations, so the stacks the tests start, which hash at
Django's default, check these passwords as they are."""

from __future__ import annotations

from django.contrib.auth.hashers import PBKDF2PasswordHasher


class QuickPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    iterations = 1000
