import html


def page_text(response):
    return html.unescape(response.get_data(as_text=True))


def test_baseline_writes_in_process(client):
    text = page_text(client.get("/baseline"))
    assert "Initial session data" in text
    assert "dict_items([('outside_function', 'outside')])" in text
    assert "Session after function call" in text
    assert "dict_items([('outside_function', 'outside'), ('inside_function', 'inside')])" in text


def test_multi_hands_the_child_write_back(client):
    text = page_text(client.get("/multi"))
    initial, after = text.split("Session after function call")
    assert "dict_items([('outside_function', 'outside')])" in initial
    assert "dict_items([('outside_function', 'outside'), ('inside_function', 'inside')])" in after


def test_multi_value_persists_in_the_server_side_session(db_app):
    app, client = db_app, db_app.test_client()
    client.get("/multi")
    text = page_text(client.get("/multi"))
    initial = text.split("Session after function call")[0]
    assert "dict_items([('outside_function', 'outside'), ('inside_function', 'inside')])" in initial
    # And it is really in the database row, not only in a cookie.
    with app.app_context():
        interface = app.session_interface
        rows = interface.sql_session_model.query.all()
        assert len(rows) == 1
        assert interface.serializer.decode(rows[0].data)["inside_function"] == "inside"


def test_value_comes_back_through_a_pipe(client):
    text = page_text(client.get("/value"))
    assert "Initial Value: Hello initial!" in text
    assert "Value after function call: inside" in text
    assert "c_wchar_p" in text
