"""Alternative fan-outs for the benchmark, served by the product's own stack.

Only bench.fanout starts these, with DJANGO_SETTINGS_MODULE set to
bench.comparators.settings. The product never imports anything from here.
"""
