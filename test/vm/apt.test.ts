/**
 * The private apt configuration for bookworm-backports: which mirror the host's own sources use
 * (sources.list(5): the one-line format and deb822 .sources), and the Dir:: options that keep apt
 * away from the system's sources, lists and cache (apt.conf(5)).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { findDebianMirror, privateAptOptions } from '../../src/vm/apt.js';

test('the mirror of the main archive from deb822 .sources (not the security archive, not a disabled stanza)', () => {
  const sources = [
    'Types: deb',
    '# http://snapshot.debian.org/archive/debian-security/20250520T000000Z',
    'URIs: http://deb.debian.org/debian-security',
    'Suites: bookworm-security',
    'Components: main',
    '',
    'Types: deb',
    'URIs: http://mirror.example.org/debian-old/',
    'Suites: bookworm',
    'Enabled: no',
    '',
    'Types: deb deb-src',
    '# http://snapshot.debian.org/archive/debian/20250520T000000Z',
    'URIs: http://ftp.example.net/debian/',
    'Suites: bookworm bookworm-updates',
    'Components: main',
    'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg',
  ].join('\n');
  assert.equal(findDebianMirror([{ name: '/etc/apt/sources.list.d/debian.sources', text: sources }]), 'http://ftp.example.net/debian');
});

test('the mirror from one-line sources.list entries, options in brackets; undefined when there is none', () => {
  const list = [
    '# deb http://commented.example/debian bookworm main',
    'deb-src http://src.example/debian bookworm main',
    'deb http://security.debian.org/debian-security bookworm-security main',
    'deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.example.com/debian bookworm main contrib',
  ].join('\n');
  assert.equal(findDebianMirror([{ name: '/etc/apt/sources.list', text: list }]), 'http://deb.example.com/debian');
  assert.equal(findDebianMirror([{ name: '/etc/apt/sources.list.d/x.list', text: 'deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n' }]), undefined);
  const nodesource = 'Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\nComponents: main\n';
  assert.equal(findDebianMirror([{ name: '/etc/apt/sources.list.d/nodesource.sources', text: nodesource }]), undefined);
  assert.equal(findDebianMirror([]), undefined);
});

test('private apt: its own source list, an empty parts folder, its own lists and cache', () => {
  const opts = privateAptOptions('/c/apt-backports');
  const values = opts.filter((_, i) => i % 2 === 1);
  assert.ok(opts.filter((_, i) => i % 2 === 0).every((o) => o === '-o'));
  for (const want of [
    'Dir::Etc::SourceList=/c/apt-backports/sources.list',
    'Dir::Etc::SourceParts=/c/apt-backports/sources.list.d',
    'Dir::State::Lists=/c/apt-backports/lists',
    'Dir::Cache=/c/apt-backports/cache',
  ]) assert.ok(values.includes(want), want);
  assert.ok(!values.some((v) => v.includes('/etc/apt')), 'nothing of the system configuration is named');
});
