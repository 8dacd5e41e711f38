#!/bin/sh
df -hP | awk 'NR == 1 || $1 ~ "^/dev/"'
