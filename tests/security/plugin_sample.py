"""A midge plugin used by the tests (loaded by module name and by file path)."""

calls = []


class Sample:
    def __init__(self, options):
        self.options = options

    def basic_auth(self, client, username, password):
        calls.append(("basic_auth", username))
        mode = self.options.get("mode", "defer")
        if username == "boom":
            raise RuntimeError("plugin bug")
        if username == self.options.get("user") and password == self.options.get("password", "").encode():
            return True
        return {"defer": None, "deny": False, "code": 0x8C}[mode]

    def acl_check(self, client, topic, access):
        if topic == "boom":
            raise RuntimeError("plugin bug")
        if topic.startswith("allowed/"):
            return True
        if topic.startswith("denied/"):
            return False
        return None

    def psk_key(self, listener, identity):
        if identity == "plugin-id":
            return "0a0b"
        if identity == "boom":
            raise RuntimeError("plugin bug")
        return None

    def on_connect(self, client):
        calls.append(("on_connect", client.client_id))


def plugin_init(options):
    return Sample(options)
