"""The login page: Django's, with a lock's refusal answered 429 and ``Retry-After``, and a
sentence that says until when (lifecycle.people.logins holds the lock itself)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import views as auth_views
from django.http import HttpResponse

from lifecycle.people import logins


class LoginPage(auth_views.LoginView):
    template_name = "registration/login.html"
    authentication_form = logins.LoginForm

    def form_invalid(self, form: Any) -> HttpResponse:
        lock = logins.lockout_of(self.request)
        if lock is None:
            return super().form_invalid(form)
        response = self.render_to_response(
            self.get_context_data(form=form, lockout=lock.sentence()), status=429
        )
        response["Retry-After"] = str(lock.retry_after())
        return response
