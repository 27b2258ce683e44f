<?php
const LOOPCAST_RELEASE = 'v1';
