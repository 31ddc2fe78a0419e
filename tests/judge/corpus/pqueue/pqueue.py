"""A priority queue with stable ordering and removal."""

import heapq
import itertools


class PriorityQueue:
    def __init__(self):
        self._heap = []
        self._entries = {}
        self._counter = itertools.count()

    def push(self, item, priority):
        if item in self._entries:
            self.remove(item)
        entry = [priority, next(self._counter), item, True]
        self._entries[item] = entry
        heapq.heappush(self._heap, entry)

    def remove(self, item):
        entry = self._entries.pop(item)
        entry[3] = False

    def pop(self):
        while self._heap:
            priority, _, item, alive = heapq.heappop(self._heap)
            if alive:
                del self._entries[item]
                return item, priority
        raise KeyError("pop from an empty priority queue")

    def __len__(self):
        return len(self._entries)

    def __contains__(self, item):
        return item in self._entries
