#!/usr/bin/env python3
"""A headless browser for consent tests: opens a URL, follows redirects with a
cookie jar, and submits each HTML form it meets (filling a login name and a
password where the form asks), as a person signing in would; it stops at the
first page without a form. Standard library only.

  headless_browser.py --ca-file CA.pem --login USER URL

Prints the final URL on the first line and the final page after it; exits 0
when the final page answered HTTP 200.
"""
import argparse
import http.cookiejar
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from html.parser import HTMLParser


class FormParser(HTMLParser):
    """Collects the first form: its action, method and input fields."""

    def __init__(self):
        super().__init__()
        self.form = None
        self.done = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and self.form is None:
            self.form = {"action": attrs.get("action", ""), "method": attrs.get("method", "get").lower(),
                         "fields": []}
        elif tag == "input" and self.form is not None and not self.done and attrs.get("name"):
            self.form["fields"].append((attrs["name"], attrs.get("value") or "", attrs.get("type", "text")))

    def handle_endtag(self, tag):
        if tag == "form" and self.form is not None:
            self.done = True


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ca-file", required=True)
    parser.add_argument("--login", required=True)
    parser.add_argument("--max-steps", type=int, default=10)
    parser.add_argument("url")
    args = parser.parse_args()

    context = ssl.create_default_context(cafile=args.ca_file)
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
                                         urllib.request.HTTPSHandler(context=context))
    request = urllib.request.Request(args.url)
    for _ in range(args.max_steps):
        try:
            response = opener.open(request, timeout=30)
            status, url, body = response.status, response.geturl(), response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            status, url, body = e.code, e.geturl(), e.read().decode("utf-8", "replace")
        form = FormParser()
        form.feed(body)
        if form.form is None or status != 200:
            print(url)
            print(body)
            return 0 if status == 200 else 1
        fields = []
        for name, value, kind in form.form["fields"]:
            if name == "login" and not value:
                value = args.login
            elif kind == "password":
                value = "any-password"
            fields.append((name, value))
        target = urllib.parse.urljoin(url, form.form["action"])
        data = urllib.parse.urlencode(fields).encode()
        if form.form["method"] == "post":
            request = urllib.request.Request(target, data=data, method="POST")
        else:
            request = urllib.request.Request(target + "?" + data.decode())
    print("too many steps", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
