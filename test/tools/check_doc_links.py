#!/usr/bin/env python3
"""check_doc_links.py — every relative link between the repository's Markdown
files resolves: the file exists inside the repository, and a #anchor names a
heading (GitHub's slug of it) or an <a id="..."> of the target file.

    test/tools/check_doc_links.py [REPO_ROOT]

Links to http(s) and mailto are not followed.  Prints each broken link as
file:line: target (reason) and exits 1 if there is any, 0 otherwise.
"""
import os
import re
import sys

SKIP_DIRS = {'.git', 'build', 'tmp_check', 'node_modules', 'results', 'log'}
LINK = re.compile(r'\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^()\s]+)(?:\s+"[^"]*")?\)')
HEADING = re.compile(r'^(#{1,6})\s+(.*?)\s*#*\s*$')
HTML_ID = re.compile(r'<a\s+(?:id|name)="([^"]+)"')


def slug(text):
	"""GitHub's anchor of a heading: lower case, markup and punctuation
	dropped (letters, digits, '-', '_' and spaces kept), spaces to '-'."""
	text = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', text)	# [a](b) -> a
	text = text.replace('`', '').lower()
	text = ''.join(ch for ch in text if ch.isalnum() or ch in '-_ ')
	return text.replace(' ', '-')


def prose_lines(path):
	"""(line number, line) outside fenced code blocks, inline code removed."""
	fence = None
	with open(path, encoding='utf-8') as f:
		for n, line in enumerate(f, 1):
			m = re.match(r'^\s*(```|~~~)', line)
			if m:
				if fence is None:
					fence = m.group(1)
				elif fence == m.group(1):
					fence = None
				continue
			if fence is None:
				yield n, re.sub(r'`[^`]*`', '``', line)


_anchors = {}


def anchors(path):
	if path not in _anchors:
		found, seen = set(), {}
		for _, line in prose_lines(path):
			for a in HTML_ID.findall(line):
				found.add(a)
		fence = None
		with open(path, encoding='utf-8') as f:
			for line in f:
				m = re.match(r'^\s*(```|~~~)', line)
				if m:
					fence = m.group(1) if fence is None else (None if fence == m.group(1) else fence)
					continue
				h = HEADING.match(line) if fence is None else None
				if h:
					s = slug(h.group(2))
					n = seen.get(s, 0)
					seen[s] = n + 1
					found.add(s if n == 0 else '%s-%d' % (s, n))
		_anchors[path] = found
	return _anchors[path]


def main():
	root = os.path.realpath(sys.argv[1] if len(sys.argv) > 1 else
							os.path.join(os.path.dirname(__file__), '..', '..'))
	bad = 0
	checked = 0
	for d, dirs, files in os.walk(root):
		dirs[:] = sorted(x for x in dirs if x not in SKIP_DIRS)
		for name in sorted(files):
			if not name.endswith('.md'):
				continue
			src = os.path.join(d, name)
			for n, line in prose_lines(src):
				for target in LINK.findall(line):
					if re.match(r'^[a-z]+:', target):
						continue
					checked += 1
					path, _, anchor = target.partition('#')
					dest = os.path.realpath(os.path.join(d, path)) if path else src
					rel = os.path.relpath(src, root)
					if not (dest == root or dest.startswith(root + os.sep)):
						print('%s:%d: %s (outside the repository)' % (rel, n, target))
						bad += 1
					elif not os.path.exists(dest):
						print('%s:%d: %s (no such file)' % (rel, n, target))
						bad += 1
					elif anchor and (not dest.endswith('.md') or anchor not in anchors(dest)):
						print('%s:%d: %s (no such anchor)' % (rel, n, target))
						bad += 1
	print('%d links checked, %d broken' % (checked, bad))
	return 1 if bad else 0


if __name__ == '__main__':
	sys.exit(main())
