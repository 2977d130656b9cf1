"""One example per command, shown at the end of its ``--help`` (``add_examples``).

Kept in one table rather than in each docstring so that every command has one (a test walks the
command tree) and each ``ferry submit`` example is checked to parse with the options its kind
declares. The ids are the sandbox's seed (``ferry sandbox --seed``) where one fits.
"""

from __future__ import annotations

import click

EXAMPLES: dict[str, str] = {
    "submit assets-avatar": "ferry submit assets-avatar -c acme --object-type 1 --object 1 examples/files/logo.png",
    "submit assets-attachment": ("ferry submit assets-attachment -c acme --object 1 --comment signed "
                                 "examples/files/report.pdf --wait"),
    "submit jira-avatar": "ferry submit jira-avatar -c acme --type project --owner FERRY --set-current logo.png",
    "submit jira-avatar-delete": "ferry submit jira-avatar-delete -c acme --type project --owner FERRY --avatar 10500",
    "submit marketplace-artifact": "ferry submit marketplace-artifact -c marketplace my-app-1.2.0.jar",
    "submit marketplace-image": "ferry submit marketplace-image -c marketplace --image-type logo logo.png",
    "submit marketplace-asset-delete": ("ferry submit marketplace-asset-delete -c marketplace "
                                        "--asset images/6e0565d3.png"),
    "submit awork-image": "ferry submit awork-image -c awork --entity users --id 5b3c avatar.jpg",
    "submit awork-image-delete": "ferry submit awork-image-delete -c awork --entity users --id 5b3c",
    "submit-batch": "ferry submit-batch jobs.csv --wait --timeout 600",
    "status": "ferry status 3f2a9c0e5b6d4e7f8a9b0c1d2e3f4a5b --wait",
    "jobs": "ferry jobs --status failed --connection acme --since 30d --file scan --error 'no attachments'",
    "api": "FERRY_API_TOKENS=s3cret ferry api --port 8080",
    "worker": "ferry worker -Q ferry.atlassian -c 16",
    "sandbox": ("ferry sandbox --seed\n"
                "  # then make the next POST to an attachment link answer 403, once:\n"
                "  curl -X POST http://127.0.0.1:8900/_sandbox/faults -H 'Content-Type: application/json' \\\n"
                "       -d '{\"path\": \"/attachments/object/\", \"method\": \"POST\", "
                "\"status\": 403, \"times\": 1}'\n"
                "  # a 429 with Retry-After, a slow answer, a cut connection, a lost reply: sandbox/README.md"),
    "demo": "ferry demo --keep",
    "jira avatars": "ferry jira avatars -c acme --type project --owner FERRY",
    "jira avatar-image": "ferry jira avatar-image -c acme --type project --avatar 10500 --size large -o a.png",
    "marketplace asset": "ferry marketplace asset -c marketplace images/6e0565d3.png",
    "marketplace links": "ferry marketplace links -c marketplace",
    "awork image": "ferry awork image -c awork --entity users --id 5b3c -o avatar.jpg",
    "replay": "ferry replay --failed --kind assets-attachment --since 2h --dry-run",
    "purge": "ferry purge --status failed --until 30d --yes",
    "notify": "ferry notify 3f2a9c0e5b6d4e7f8a9b0c1d2e3f4a5b",
    "events": "ferry events --follow --connection acme",
    "cancel": "ferry cancel --status queued --connection acme --dry-run",
    "pause": "ferry pause acme",
    "resume": "ferry resume acme",
    "connections": "ferry connections",
    "workers": "ferry workers",
    "flower": "ferry flower --port=5555",
    "info": "ferry info",
    "redis stop": "ferry redis stop",
    "archive migrate": "ferry archive migrate",
    "archive move": "ferry archive move --json",
    "batch open": "ferry batch open --name nightly --batch-callback https://erp.example/hooks/ferry --json",
    "batch seal": "ferry batch seal 9d1c0e5b6d4e7f8a9b0c1d2e3f4a5b6c",
    "batch list": "ferry batch list",
    "batch status": "ferry batch status 9d1c0e5b6d4e7f8a9b0c1d2e3f4a5b6c --json",
    "batch wait": "ferry batch wait 9d1c0e5b6d4e7f8a9b0c1d2e3f4a5b6c --timeout 3600",
    "batch replay": "ferry batch replay 9d1c0e5b6d4e7f8a9b0c1d2e3f4a5b6c",
    "batch cancel": "ferry batch cancel 9d1c0e5b6d4e7f8a9b0c1d2e3f4a5b6c",
    "batch notify": "ferry batch notify 9d1c0e5b6d4e7f8a9b0c1d2e3f4a5b6c",
    "batch priority": "ferry batch priority 9d1c0e5b6d4e7f8a9b0c1d2e3f4a5b6c normal",
    "priority": "ferry priority 3f2a9c0e5b6d4e7f8a9b0c1d2e3f4a5b high",
}


def add_examples(group: click.Group, path: tuple[str, ...] = ()) -> None:
    """Append its example to the help of every command under ``group``."""
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            add_examples(command, (*path, name))
            continue
        example = EXAMPLES.get(" ".join((*path, name)))
        if example and "Example:" not in (command.help or ""):
            command.help = (command.help or "").rstrip() + "\n\n\b\nExample:\n  " + example
