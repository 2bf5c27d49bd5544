"""The `microblog` console command: Django's management commands under the project's name."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "microblog.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as error:
        # A configuration mistake gets one clear line, not a traceback.
        sys.stderr.write(f"microblog: configuration error: {error}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
