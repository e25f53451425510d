"""``python -m clothing.commands.remote pull|push``: DVC's pull and push, with one clear line when the remote fails.

    make pull     # the committed run's data and models from the team's DVC remote
    make push     # yours to it

DVC does the work (its progress shows as usual); this only checks that a remote is
configured and, when DVC fails, says in one line what went wrong and what to check,
instead of "unexpected error". A failed or interrupted transfer loses nothing: DVC
uploads each file under a temporary name and renames it when complete, and never
changes the workspace or the local cache on a push; running the command again resumes.
"""

from __future__ import annotations

import subprocess
import sys

from clothing.commands import command_parser
from clothing.errors import exit_code

# What DVC's (asyncssh's, boto's...) error says -> what to tell the user.
HINTS = {
    "Connect call failed": "cannot connect: is the server up, and the host and port in the remote's url right?",
    "Name or service not known": "unknown host: check the host in the remote's url",
    "Permission denied": "the server refused the login: check the user in the url and "
    "`dvc remote modify --local {remote} keyfile PATH`",
    "Host key is not trusted": "the server's host key is not in ~/.ssh/known_hosts: connect once with ssh to check it",
    "No such file or directory": "the remote's folder does not exist on the server",
    "Checkout failed": "some outputs are on neither the remote nor this cache: push them from where the pipeline "
    "ran (`make push`), or rebuild them here (`dvc repro`)",
}


def default_remote() -> tuple[str, str] | None:
    """(name, url) of the default DVC remote, or None."""
    named = subprocess.run(["dvc", "remote", "default"], capture_output=True, text=True)
    name = named.stdout.strip()
    if named.returncode != 0 or not name:  # "No default remote set", exit code 1
        return None
    url = subprocess.run(["dvc", "config", f"remote.{name}.url"], capture_output=True, text=True).stdout.strip()
    return name, url


def transfer(action: str) -> int:
    remote = default_remote()
    if remote is None:
        print(f"error: no default DVC remote: add one (docs/team.md), then `make {action}`", file=sys.stderr)
        return 1
    name, url = remote
    said = []
    with subprocess.Popen(["dvc", action], stderr=subprocess.PIPE, text=True) as dvc:
        for line in dvc.stderr:  # shown as it comes, kept to explain a failure
            said.append(line)
            sys.stderr.write(line)
    if dvc.returncode == 0:
        return 0
    errors = [line.strip() for line in said if line.startswith("ERROR")] or ["dvc gave no reason"]
    reason = next((hint for needle, hint in HINTS.items() if needle.lower() in "".join(said).lower()), errors[-1])
    print(f"error: dvc {action} with remote '{name}' ({url}) failed: {reason.format(remote=name)}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("python -m clothing.commands.remote", __doc__)
    parser.add_argument("action", choices=["pull", "push"])
    args = parser.parse_args(argv)
    return exit_code(lambda: transfer(args.action))


if __name__ == "__main__":
    sys.exit(main())
