<?php
const HEADER_RELEASE = 'v1';
