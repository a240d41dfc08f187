"""Writing to the Flask session from a child process, and getting a string back: fixed with handoff.

    flask --app examples/seed_app run
    curl -c jar -b jar http://127.0.0.1:5000/multi
    curl http://127.0.0.1:5000/value
"""

import secrets

from flask import Flask, session

from handoff import Handoff, run

app = Flask(__name__)
app.secret_key = secrets.token_hex()  # signs the session cookie; a real app loads its own
Handoff(app)


def write_to_session(session):
    session["inside_function"] = "inside"


def return_value():
    return "inside"


@app.get("/multi")
def multi():
    session["outside_function"] = "outside"
    lines = [f"Initial session data {session.items()}"]
    run(write_to_session, session)  # in a child; its write lands in this session
    lines.append(f"Session after function call {session.items()}")
    print(*lines, sep="\n")
    return "\n".join(lines) + "\n", {"Content-Type": "text/plain"}


@app.get("/value")
def value():
    lines = ["Initial Value: Hello initial!", f"Value after function call: {run(return_value)}"]
    print(*lines, sep="\n")
    return "\n".join(lines) + "\n", {"Content-Type": "text/plain"}
