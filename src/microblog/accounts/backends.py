from django.contrib.auth.backends import ModelBackend


class CaseInsensitiveModelBackend(ModelBackend):
    """Django's backend; the user lookup ignores case through `UserManager.get_by_natural_key`.

    An unknown username still runs the password hasher once (ModelBackend does this), so a failed
    log-in takes the same time whether or not the account exists.
    """
