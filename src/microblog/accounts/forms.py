from django import forms
from django.core.exceptions import ValidationError

from microblog.accounts.models import (
    DESCRIPTION_MAX_LENGTH,
    USERNAME_MAX_LENGTH,
    username_is_valid,
)
from microblog.accounts.services import username_clean
from microblog.core.errors import form_clean
from microblog.core.text import clean_text


class SignUpForm(forms.Form):
    # No max_length here: it would become a maxlength attribute, and the browser would cut a
    # longer name silently; username_clean refuses it with a message instead.
    username = forms.CharField(
        help_text=f"Up to {USERNAME_MAX_LENGTH} letters, digits or underscores.",
        widget=forms.TextInput(
            attrs={"autocomplete": "username", "autocapitalize": "none", "autofocus": True}
        ),
    )
    password = forms.CharField(
        strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "new-password"})
    )
    password_confirmation = forms.CharField(
        label="Confirm password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean_username(self) -> str:
        return form_clean(username_clean, self.cleaned_data["username"])

    def clean(self) -> dict[str, str]:
        data = super().clean() or {}
        password, confirmation = data.get("password"), data.get("password_confirmation")
        if password and confirmation and password != confirmation:
            self.add_error("password_confirmation", "The two passwords do not match.")
        return data


class LogInForm(forms.Form):
    username = forms.CharField(
        max_length=254,
        widget=forms.TextInput(
            attrs={"autocomplete": "username", "autocapitalize": "none", "autofocus": True}
        ),
    )
    password = forms.CharField(
        strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )

    def clean_username(self) -> str:
        # Checked before the limiter or the lookup sees the name: no account has a name outside
        # ASCII letters, digits and underscores (the limiter's key and the database's
        # case-insensitive match agree only on those; PostgreSQL refuses NUL bytes).
        username: str = self.cleaned_data["username"]
        if not username_is_valid(username):
            raise ValidationError("No account has that name.", code="invalid_username")
        return username


class ProfileForm(forms.Form):
    description = forms.CharField(
        label="Bio",
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 3, "data-counter": DESCRIPTION_MAX_LENGTH}),
        help_text=f"Up to {DESCRIPTION_MAX_LENGTH} characters.",
    )

    def clean_description(self) -> str:
        return form_clean(
            lambda description: clean_text(
                description, max_length=DESCRIPTION_MAX_LENGTH, allow_empty=True, label="bio"
            ),
            self.cleaned_data["description"],
        )


class PasswordChangeForm(forms.Form):
    current_password = forms.CharField(
        strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )
    new_password = forms.CharField(
        strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "new-password"})
    )
    new_password_confirmation = forms.CharField(
        label="Confirm new password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean(self) -> dict[str, str]:
        data = super().clean() or {}
        if data.get("new_password") != data.get("new_password_confirmation") and not self.errors:
            raise ValidationError("The two new passwords do not match.")
        return data


class DeleteAccountForm(forms.Form):
    password = forms.CharField(
        label="Your password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )
