"""Native tests of the action against fluxo_mock's MockHost: `python3 -m unittest`."""

import unittest

from fluxo_mock import MockHost  # before the action: it puts the bindings on the path

from app import WitWorld


class GreetTest(unittest.TestCase):
    def test_greets_the_contact_and_tags_them(self):
        host = MockHost(fields={"name": "Ana"})
        outcome = host.run(WitWorld(), input={"greeting": "Olá"})
        self.assertEqual(outcome.replies, ["Olá, Ana!"])
        self.assertEqual(host.tags, ["greeted"])
        self.assertEqual(host.output(outcome), {"greeted": "Ana"})

    def test_a_contact_without_a_name_is_a_final_error(self):
        host = MockHost()
        error = host.run_error(WitWorld())
        self.assertFalse(error.retryable)
        self.assertEqual(error.message, "the contact has no name")
        self.assertEqual(host.tags, [])

    def test_an_input_that_is_not_an_object_is_a_final_error(self):
        host = MockHost(fields={"name": "Ana"})
        error = host.run_error(WitWorld(), input=["Olá"])
        self.assertFalse(error.retryable)
        self.assertEqual(host.tags, [])


if __name__ == "__main__":
    unittest.main()
